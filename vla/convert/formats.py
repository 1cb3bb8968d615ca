"""The registry behind `vla-convert`: format name -> importer and its options dataclass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from vla.convert.dp import DiffusionPolicyOptions, import_dp
from vla.convert.errors import ConvertError
from vla.convert.hdf5 import AlohaOptions, import_aloha
from vla.convert.lerobot import LeRobotOptions, import_lerobot
from vla.convert.report import ConvertReport
from vla.convert.rosbag import import_rosbag
from vla.convert.rosbag_mapping import RosbagMapping


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    importer: Callable[..., ConvertReport]
    options: Callable[[dict[str, Any], str], Any]


def _dataclass_from(cls: type) -> Callable[[dict[str, Any], str], Any]:
    def build(d: dict[str, Any], where: str) -> Any:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConvertError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    return build


FORMATS: dict[str, Format] = {
    "rosbag": Format(
        "rosbag", "rosbag2 bags (mcap or sqlite3 storage)", import_rosbag, RosbagMapping.from_dict
    ),
    "aloha": Format(
        "aloha", "ALOHA/ACT HDF5 episode_<i>.hdf5 files", import_aloha, _dataclass_from(AlohaOptions)
    ),
    "lerobot": Format(
        "lerobot", "LeRobotDataset v3 (Parquet + MP4)", import_lerobot, _dataclass_from(LeRobotOptions)
    ),
    "dp": Format(
        "dp", "Diffusion Policy zarr v2 ReplayBuffer", import_dp, _dataclass_from(DiffusionPolicyOptions)
    ),
}


def convert(
    fmt: str,
    src: str | Path,
    out: str | Path,
    options: dict[str, Any],
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Run the importer of `fmt` with `options` (the mapping config as a plain dict, `format` key ignored)."""
    if fmt not in FORMATS:
        raise ConvertError(f"format: unknown format {fmt!r}; one of {sorted(FORMATS)}")
    f = FORMATS[fmt]
    opts = f.options({k: v for k, v in options.items() if k not in ("format", "description")}, "mapping")
    return f.importer(src, out, opts, overwrite=overwrite, dry_run=dry_run, progress=progress)
