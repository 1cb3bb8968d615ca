"""The native dataset format: names, metadata dataclasses and storage choices.

The full specification (enough to write a reader without this code) is `docs/dataset_format.md`.
In short, a zarr v3 directory store::

    <root>/zarr.json            group; attributes = DatasetMeta.to_json() (format, version, fps, ...)
    <root>/data/<key>           arrays, time-major (N_frames, ...); image_<cam> are uint8 (N, H, W, 3)
    <root>/meta/episode_ends    int64 (>= n_episodes,), exclusive end frame of each episode
    <root>/meta/zarr.json       group; attributes = the commit record
                                {"n_episodes", "n_frames", "episodes": [{"instruction", "info"}, ...]}

Only the first ``n_episodes`` entries of ``meta/episode_ends`` and the first ``n_frames`` frames of each
data array are committed; anything beyond is the residue of an interrupted append.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla.data.errors import DatasetError

FORMAT_NAME = "vla-replay-buffer"
FORMAT_VERSION = 1
DATA_GROUP = "data"
META_GROUP = "meta"
STATS_GROUP = "stats"
EPISODE_ENDS = "episode_ends"
IMAGE_PREFIX = "image_"

# Low-dimensional keys: one chunk holds this many frames, so a sequential read of a whole episode
# (or the whole key, for statistics) touches few files. 7 float32 dims x 4096 frames = 112 KiB.
LOWDIM_CHUNK_FRAMES = 4096
# Images: one frame per chunk, so a training window of To frames reads only To chunks.
IMAGE_CHUNK_FRAMES = 1
EPISODE_ENDS_CHUNK = 4096

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")


def is_image_key(key: str) -> bool:
    """Image keys are named ``image_<camera>`` and hold uint8 (N, H, W, 3)."""
    return key.startswith(IMAGE_PREFIX)


def camera_of(key: str) -> str:
    """``image_front`` -> ``front``."""
    return key[len(IMAGE_PREFIX) :]


def check_name(name: str, what: str) -> None:
    """Keys and camera names become file names in the store: letters, digits, underscores only."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DatasetError(
            f"{what}: invalid name {name!r} (letters, digits and '_' only, not starting with '_')"
        )


def to_json_value(value: Any, where: str) -> Any:
    """Convert numpy scalars/arrays to plain JSON values; raise naming `where` if impossible."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"{type(o).__name__} is not JSON-serialisable")

    try:
        # allow_nan=False: NaN/Infinity are not valid JSON and other readers would choke on them.
        return json.loads(json.dumps(value, default=default, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{where}: must be JSON-serialisable ({e})") from None


def image_codecs() -> list[Any]:
    """Blosc+zstd, bit-shuffled (fast to decode at training time), then a CRC32C checksum.

    The checksum makes a truncated or damaged chunk fail to decode: blosc alone silently accepts a
    truncated chunk that it had stored uncompressed (noisy images).
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    return [BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"), Crc32cCodec()]


def lowdim_codecs() -> list[Any]:
    """Blosc+zstd with byte shuffle (groups the exponent bytes of floats together), then CRC32C."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    return [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle"), Crc32cCodec()]


@dataclass
class KeySpec:
    """Documentation of one data key, stored in the root attributes under ``keys``.

    units: e.g. ``"rad|[0,1]"`` (per-dim units joined by '|' where they differ), ``"rad/s"``, ``"rgb"``.
    names: optional names of the last dimension's entries; when given its length must match the array.
    """

    units: str = ""
    description: str = ""
    names: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"units": self.units, "description": self.description}
        if self.names is not None:
            d["names"] = list(self.names)
        return d

    @classmethod
    def from_json(cls, d: Any, where: str) -> KeySpec:
        if isinstance(d, KeySpec):
            return d
        if not isinstance(d, dict):
            raise DatasetError(f"{where}: expected an object with 'units'/'description', got {d!r}")
        unknown = set(d) - {"units", "description", "names"}
        if unknown:
            raise DatasetError(f"{where}: unknown fields {sorted(unknown)}")
        names = d.get("names")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise DatasetError(f"{where}.names: expected a list of strings, got {names!r}")
        units, desc = d.get("units", ""), d.get("description", "")
        if not isinstance(units, str) or not isinstance(desc, str):
            raise DatasetError(f"{where}: 'units' and 'description' must be strings")
        return cls(units=units, description=desc, names=names)


@dataclass
class DatasetMeta:
    """Store-level metadata (root group attributes).

    fps: control rate in Hz (frames per second of every time-major array).
    robot: robot name, e.g. ``"ur5e_2f85"`` (``configs/robot/<robot>.yaml``).
    joint_names: names of the ``state``/``action`` dimensions, in order (may be empty when unknown).
    camera_names: one per ``data/image_<cam>`` array.
    keys: per-key units/description.
    extra: free JSON-able dictionary (provenance, simulator version, ...).
    """

    fps: float
    robot: str
    joint_names: list[str] = field(default_factory=list)
    camera_names: list[str] = field(default_factory=list)
    keys: dict[str, KeySpec] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = "DatasetMeta"
        if isinstance(self.fps, bool) or not isinstance(self.fps, int | float) or not math.isfinite(self.fps):
            raise DatasetError(f"{where}.fps: expected a positive number, got {self.fps!r}")
        if self.fps <= 0:
            raise DatasetError(f"{where}.fps: expected a positive number, got {self.fps!r}")
        self.fps = float(self.fps)
        if not isinstance(self.robot, str) or not self.robot:
            raise DatasetError(f"{where}.robot: expected a non-empty string, got {self.robot!r}")
        for fname in ("joint_names", "camera_names"):
            v = getattr(self, fname)
            if not isinstance(v, list | tuple) or not all(isinstance(n, str) for n in v):
                raise DatasetError(f"{where}.{fname}: expected a list of strings, got {v!r}")
            if len(set(v)) != len(v):
                raise DatasetError(f"{where}.{fname}: duplicate names in {list(v)}")
            setattr(self, fname, list(v))
        for cam in self.camera_names:
            check_name(cam, f"{where}.camera_names")
        if not isinstance(self.keys, dict):
            raise DatasetError(
                f"{where}.keys: expected a dict key -> KeySpec, got {type(self.keys).__name__}"
            )
        self.keys = {k: KeySpec.from_json(v, f"{where}.keys.{k}") for k, v in self.keys.items()}
        if not isinstance(self.extra, dict):
            raise DatasetError(f"{where}.extra: expected a dict, got {type(self.extra).__name__}")
        self.extra = to_json_value(self.extra, f"{where}.extra")

    @property
    def image_keys(self) -> list[str]:
        return [IMAGE_PREFIX + c for c in self.camera_names]

    def to_json(self) -> dict[str, Any]:
        """The root group's attributes."""
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "fps": self.fps,
            "robot": self.robot,
            "joint_names": list(self.joint_names),
            "camera_names": list(self.camera_names),
            "keys": {k: v.to_json() for k, v in self.keys.items()},
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, attrs: dict[str, Any], where: str) -> DatasetMeta:
        """Parse root attributes; `where` is the file they came from (for error messages)."""
        fmt = attrs.get("format")
        if fmt != FORMAT_NAME:
            raise DatasetError(
                f"{where}: attribute 'format' is {fmt!r}, expected {FORMAT_NAME!r} "
                "(a Diffusion Policy store? convert it with `vla-dataset import-dp`)"
            )
        version = attrs.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise DatasetError(
                f"{where}: attribute 'format_version' is {version!r}, expected an integer >= 1"
            )
        if version > FORMAT_VERSION:
            raise DatasetError(
                f"{where}: format_version {version} is newer than this reader ({FORMAT_VERSION}); upgrade vla"
            )
        missing = [k for k in ("fps", "robot", "joint_names", "camera_names") if k not in attrs]
        if missing:
            raise DatasetError(f"{where}: missing root attribute(s) {missing}")
        keys = attrs.get("keys", {})
        if not isinstance(keys, dict):
            raise DatasetError(f"{where}: attribute 'keys' must be an object, got {keys!r}")
        try:
            return cls(
                fps=attrs["fps"],
                robot=attrs["robot"],
                joint_names=attrs["joint_names"],
                camera_names=attrs["camera_names"],
                keys={k: KeySpec.from_json(v, f"keys.{k}") for k, v in keys.items()},
                extra=attrs.get("extra", {}),
            )
        except DatasetError as e:
            raise DatasetError(f"{where}: {e}") from None
