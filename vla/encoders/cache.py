"""Precomputed frame embeddings inside a dataset's zarr store, keyed by encoder fingerprint.

Layout (group `embeddings/<fingerprint>/` at the store root; the dataset writer owns everything else):

    image_<cam>   float16|float32 (N_frames, n_img, D)   chunked per `batch_size` frames
    text          float  (n_episodes, L, D)   separable encoders: one row per episode's instruction
                         (N_frames,  L, D)    generative encoders: image+text prefix is joint -> per frame
    text_mask     bool   same leading shape, L
    attrs         fingerprint, encoder config, dim, tokens_per_image, cameras, separable,
                  n_frames, n_episodes, episodes_digest, complete

A reader (`EmbeddingStore`) opened with an encoder's fingerprint raises `StaleEmbeddingsError` when
the group is missing (never computed with that encoder: another model, weights, layer, preprocessing
...), incomplete (interrupted run) or out of date (the dataset gained or changed episodes since).
Groups are looked up by `same_encoder` (the fingerprint's hash, not the model folder's name), so a
renamed copy of an encoder finds what the original stored. A group whose metadata, attributes or
chunks cannot be read (damaged storage) raises `vla.data.DatasetError` naming the file or array.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from vla.data.errors import DatasetError
from vla.data.validate import check_chunks, child_names, first_non_finite
from vla.encoders.base import FrozenEncoder
from vla.encoders.fingerprint import same_encoder
from vla.encoders.output import EncoderOutput

EMBEDDINGS_GROUP = "embeddings"
FORMAT_VERSION = 1
log = logging.getLogger(__name__)
T = TypeVar("T")


class StaleEmbeddingsError(RuntimeError):
    """Stored embeddings do not match the encoder or the dataset they are read for."""


class DatasetLike(Protocol):
    """The part of `vla.data.ReplayBuffer` this module uses."""

    root: Any  # zarr.Group opened for writing (precompute) or reading

    @property
    def n_frames(self) -> int: ...
    @property
    def n_episodes(self) -> int: ...
    @property
    def episode_ends(self) -> np.ndarray: ...
    @property
    def instructions(self) -> Sequence[str]: ...
    @property
    def meta(self) -> Any: ...  # .camera_names
    def array(self, key: str) -> Any: ...
    def read_frames(self, key: str, frames: np.ndarray, direct: bool = True) -> np.ndarray: ...


def _where(rb: DatasetLike) -> str:
    return str(getattr(rb, "path", None) or getattr(rb.root, "store", "dataset store"))


def _recompute_hint(rb: DatasetLike) -> str:
    return f"rerun `vla-embed dataset={_where(rb)} encoder=<the encoder config> overwrite=true` to recompute them"


def embeddings_group(rb: DatasetLike, create: bool = False) -> Any:
    """The `embeddings/` group of the store (None when absent, unless `create`).

    Raises DatasetError naming `embeddings/zarr.json` when its metadata cannot be read.
    """
    try:
        if create:
            return rb.root.require_group(EMBEDDINGS_GROUP)
        return rb.root[EMBEDDINGS_GROUP]
    except KeyError:
        return None
    except Exception as e:  # invalid JSON / zarr metadata
        raise DatasetError(
            f"{_where(rb)}/{EMBEDDINGS_GROUP}/zarr.json: unreadable zarr metadata ({type(e).__name__}: {e}); "
            f"the group holds only derived data: delete {_where(rb)}/{EMBEDDINGS_GROUP} and run `vla-embed` again"
        ) from None


def find_groups(emb: Any, fingerprint: str) -> list[str]:
    """Names of the groups under `emb` holding tokens of `fingerprint`: the exact name first, then any
    other with the same identity (`same_encoder`: a renamed copy of the encoder's folder). Lists the
    store's directories, so one group with a damaged `zarr.json` does not hide the others."""
    if emb is None:
        return []
    names = child_names(emb)
    return sorted((n for n in names if same_encoder(n, fingerprint)), key=lambda n: (n != fingerprint, n))


def episodes_digest(rb: DatasetLike, n_episodes: int | None = None) -> str:
    """Hash of episode boundaries + instructions (of the first `n_episodes`; None: all): changes
    when episodes are added or rewritten."""
    n = rb.n_episodes if n_episodes is None else int(n_episodes)
    h = hashlib.sha256()
    h.update(np.asarray(rb.episode_ends[:n], dtype=np.int64).tobytes())
    for s in rb.instructions[:n]:
        h.update(s.encode() + b"\0")
    return h.hexdigest()[:16]


def _extendable(emb: Any, name: str, rb: DatasetLike) -> int | None:
    """Episodes a complete group covers when they are a strict prefix of `rb`'s episodes (appended
    episodes, e.g. DAgger rounds: only the new frames need encoding); None otherwise."""
    try:
        a = dict(emb[name].attrs)
        n_ep = int(a["n_episodes"])
        ok = bool(a.get("complete")) and 0 < n_ep < rb.n_episodes
        ok = ok and a.get("episodes_digest") == episodes_digest(rb, n_ep)
        ok = ok and int(a["n_frames"]) == int(rb.episode_ends[n_ep - 1])
    except Exception:  # unreadable or foreign attributes: recompute from scratch
        return None
    return n_ep if ok else None


def frame_episodes(rb: DatasetLike, frames: np.ndarray) -> np.ndarray:
    """Episode index of each frame index."""
    ends = np.asarray(rb.episode_ends[: rb.n_episodes], dtype=np.int64)
    return np.searchsorted(ends, frames, side="right")


def precompute_embeddings(
    rb: DatasetLike,
    enc: FrozenEncoder,
    batch_size: int = 32,
    dtype: str = "float16",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    direct_reads: bool = True,
    prefetch: bool = True,
) -> str:
    """Encode every frame of `rb` once and store the tokens under `embeddings/<enc.fingerprint>/`.

    Cameras are `rb.meta.camera_names`; each batch of frames of all cameras is one forward pass.
    Returns the name of the group written or reused: the encoder's fingerprint, or the stored name of
    the same encoder under another folder name (`same_encoder`). An existing complete, up-to-date
    group that reads back whole is reused unless `overwrite`; one that cannot be read raises
    DatasetError naming the array (recompute it with `overwrite=True`). A complete group of a dataset
    that has since had episodes appended (and no other change) is extended: only the new frames are
    encoded (marked incomplete while that runs, so an interrupted extension is recomputed whole).

    direct_reads: read image chunk files through `rb.read_frames` (the sampler's direct chunk reader,
        ~3x faster than zarr's API for one-frame chunks); False reads slices through zarr.
    prefetch: overlap reading the next batch and writing the previous one with the forward pass, in
        one I/O thread. Neither option changes the stored values (`benchmarks/bench_embed.py`).
    progress: called with (frames written, total frames) after each batch's write.
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"embedding dtype={dtype!r}: expected float16 or float32")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    fp = enc.fingerprint
    cams = list(rb.meta.camera_names)
    if not cams:
        raise StaleEmbeddingsError(f"{_where(rb)}: meta.camera_names is empty; nothing to embed")
    emb = embeddings_group(rb, create=True)
    found = find_groups(emb, fp)
    # One group per encoder identity: (re)compute into the stored name a renamed copy already uses.
    name = found[0] if found else fp
    done_eps = _extendable(emb, name, rb) if found and not overwrite else None
    if done_eps is not None:  # episodes were appended since: encode those alone
        return _extend(
            rb, enc, emb[name], name, done_eps, batch_size, dtype, progress, direct_reads, prefetch
        )
    if found and not overwrite:
        # Reuse only after reading everything training will read: metadata and attributes of the
        # group and of each array, and every chunk (decodes, finite). Stale (interrupted, or the
        # dataset changed) -> recompute. Unreadable (damaged storage) -> refuse: the damage may reach
        # beyond this derived group (run `vla-dataset validate`), and a transient read error must not
        # make us delete a valid set that took hours to encode; overwrite=true recomputes it.
        try:
            store = EmbeddingStore(rb, fp)
            store.verify()
            log.info("embeddings %s already complete in %s", store.name, _where(rb))
            return store.name
        except StaleEmbeddingsError as e:
            log.info("recomputing embeddings: %s", e)
    try:
        g = emb.create_group(name, overwrite=True)
    except OSError as e:
        raise DatasetError(f"{_where(rb)}/{EMBEDDINGS_GROUP}/{name}: cannot write ({e})") from None
    create_arrays(g, rb, enc, name, batch_size, dtype)
    _encode_into(rb, enc, g, name, 0, 0, batch_size, dtype, progress, direct_reads, prefetch)
    g.attrs["complete"] = True
    return name


def create_arrays(
    g: Any, rb: DatasetLike, enc: FrozenEncoder, name: str, batch_size: int, dtype: str
) -> None:
    """Give the (empty) group `g` the attributes (complete=False) and the full-size arrays of `enc`'s
    tokens of every frame of `rb`, chunked per `batch_size` frames; nothing is encoded yet."""
    cams = list(rb.meta.camera_names)
    n, n_img, d, L = rb.n_frames, enc.tokens_per_image, enc.dim, enc.cfg.max_text_len
    attrs = {
        "format_version": FORMAT_VERSION,
        "fingerprint": name,
        "encoder": enc.cfg.to_dict(),
        "dim": d,
        "tokens_per_image": n_img,
        "max_text_len": L,
        "cameras": cams,
        "separable": enc.separable,
        "n_frames": n,
        "n_episodes": rb.n_episodes,
        "episodes_digest": episodes_digest(rb),
        "dtype": dtype,
        "complete": False,
    }
    g.attrs.update(attrs)
    chunk = max(1, min(batch_size, n))
    for c in cams:
        g.create_array(f"image_{c}", shape=(n, n_img, d), chunks=(chunk, n_img, d), dtype=dtype)
    n_text = rb.n_episodes if enc.separable else n
    g.create_array("text", shape=(n_text, L, d), chunks=(max(1, min(chunk, n_text)), L, d), dtype=dtype)
    g.create_array("text_mask", shape=(n_text, L), chunks=(max(1, min(chunk, n_text)), L), dtype="bool")


def encode_range(
    rb: DatasetLike,
    enc: FrozenEncoder,
    g: Any,
    name: str,
    frames: range,
    episodes: range,
    batch_size: int,
    dtype: str,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Encode the frames `frames` and (separable encoders) the instructions of `episodes` of `rb`
    into the full-size arrays of `g` (`create_arrays`), batch by batch from each range's start: a
    range starting at a multiple of `batch_size` is encoded in the same batches as the whole."""
    _encode_into(
        rb, enc, g, name, frames.start, episodes.start, batch_size, dtype, progress, True, True,
        end_frame=frames.stop, end_episode=episodes.stop,
    )  # fmt: skip


def _extend(
    rb: DatasetLike,
    enc: FrozenEncoder,
    g: Any,
    name: str,
    done_eps: int,
    batch_size: int,
    dtype: str,
    progress: Callable[[int, int], None] | None,
    direct_reads: bool,
    prefetch: bool,
) -> str:
    """Grow a complete group over `done_eps` episodes to all of `rb`'s, encoding the new frames only."""
    if g.attrs.get("dtype") != dtype:
        dtype = str(g.attrs.get("dtype"))  # one dtype per group: keep the stored one
    start_frame = int(rb.episode_ends[done_eps - 1])
    n = rb.n_frames
    g.attrs["complete"] = False  # until every new row is written
    for c in rb.meta.camera_names:
        arr = g[f"image_{c}"]
        arr.resize((n, *arr.shape[1:]))
    n_text = rb.n_episodes if enc.separable else n
    for key in ("text", "text_mask"):
        arr = g[key]
        arr.resize((n_text, *arr.shape[1:]))
    _encode_into(rb, enc, g, name, start_frame, done_eps, batch_size, dtype, progress, direct_reads, prefetch)
    g.attrs.update({"n_frames": n, "n_episodes": rb.n_episodes, "episodes_digest": episodes_digest(rb)})
    g.attrs["complete"] = True
    log.info("embeddings %s extended from %d to %d episodes", name, done_eps, rb.n_episodes)
    return name


def _encode_into(
    rb: DatasetLike,
    enc: FrozenEncoder,
    g: Any,
    name: str,
    start_frame: int,
    start_episode: int,
    batch_size: int,
    dtype: str,
    progress: Callable[[int, int], None] | None,
    direct_reads: bool,
    prefetch: bool,
    end_frame: int | None = None,
    end_episode: int | None = None,
) -> None:
    """Encode frames `start_frame..end_frame` and (separable encoders) the instructions of episodes
    `start_episode..end_episode` of `rb` (None: to the end) into the group `g`'s full-size arrays."""
    cams = list(rb.meta.camera_names)
    n = rb.n_frames if end_frame is None else int(end_frame)
    n_eps = rb.n_episodes if end_episode is None else int(end_episode)
    arrays = {c: g[f"image_{c}"] for c in cams}
    text, text_mask = g["text"], g["text_mask"]

    def stored(key: str, tokens: torch.Tensor, s: int, row: str = "frame") -> np.ndarray:
        """Tokens as stored; refuses NaN/Inf (a float16 overflow or a broken encoder) before training."""
        x = tokens.cpu().numpy()
        with np.errstate(over="ignore"):  # reported below, naming the array
            y = x.astype(dtype)
        bad = first_non_finite(y)
        if bad is not None:
            why = (
                "the encoder's values exceed float16; use dtype=float32"
                if first_non_finite(x) is None
                else "the encoder produced them"
            )
            raise DatasetError(
                f"{_where(rb)}/{EMBEDDINGS_GROUP}/{name}/{key}: non-finite token ({bad[2]}) at {row} "
                f"{s + bad[0]} ({why})"
            )
        return y

    instructions = list(rb.instructions[: rb.n_episodes])
    if enc.separable:
        for s in range(start_episode, n_eps, batch_size):
            out = enc.encode_text(instructions[s : min(s + batch_size, n_eps)])
            text[s : s + out.batch_size] = stored("text", out.tokens, s, "episode")
            text_mask[s : s + out.batch_size] = out.mask.cpu().numpy()

    def read(s: int, e: int) -> dict[str, np.ndarray]:
        if direct_reads:
            return {c: rb.read_frames(f"image_{c}", np.arange(s, e)) for c in cams}
        return {c: np.asarray(rb.array(f"image_{c}")[s:e]) for c in cams}

    targets = {"text": text, "text_mask": text_mask, **{f"image_{c}": arrays[c] for c in cams}}

    def write(s: int, e: int, rows: dict[str, np.ndarray]) -> None:
        for key, v in rows.items():
            targets[key][s:e] = v

    # One I/O thread reads batch k+1 and writes batch k-1 while the encoder runs batch k in this
    # thread. Writes complete in order; one write is in flight at a time (bounded memory), and its
    # error surfaces on the next wait. `complete` is set only after the last write returned.
    spans = [(s, min(n, s + batch_size)) for s in range(start_frame, n, batch_size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-embed-io") as io:
        submit = io.submit if prefetch else _run_now
        next_read = submit(read, *spans[0]) if spans else None
        pending: tuple[Future[None], int] | None = None
        try:
            for k, (s, e) in enumerate(spans):
                assert next_read is not None
                images = next_read.result()
                if k + 1 < len(spans):
                    next_read = submit(read, *spans[k + 1])
                rows: dict[str, np.ndarray] = {}
                if enc.separable:
                    out = enc.encode_images(images)
                else:
                    eps = frame_episodes(rb, np.arange(s, e))
                    out = enc.encode(images, [instructions[i] for i in eps])
                    rows["text"] = stored("text", out.segment("text").tokens, s)
                    rows["text_mask"] = out.segment("text").mask.cpu().numpy()
                for c in cams:
                    rows[f"image_{c}"] = stored(f"image_{c}", out.segment(c).tokens, s)
                if pending is not None:
                    _finish(pending, n, progress)
                pending = (submit(write, s, e, rows), e)
            if pending is not None:
                _finish(pending, n, progress)
        except BaseException:
            io.shutdown(wait=True, cancel_futures=True)
            raise


def _run_now(fn: Callable[..., T], *args: Any) -> Future[T]:
    """`fn(*args)` in the calling thread, as a done Future (no prefetch)."""
    f: Future[T] = Future()
    try:
        f.set_result(fn(*args))
    except BaseException as e:
        f.set_exception(e)
    return f


def _finish(pending: tuple[Future[None], int], n: int, progress: Callable[[int, int], None] | None) -> None:
    """Wait for a batch's write (re-raising its error), then report the frames written so far."""
    fut, done = pending
    fut.result()
    if progress is not None:
        progress(done, n)


class EmbeddingStore:
    """Reads precomputed tokens for training; validates them against `fingerprint` and the dataset.

    The group is found by `same_encoder` (see `find_groups`); `name` is the stored group's name.

    Raises:
        StaleEmbeddingsError: no complete group for this fingerprint, or the dataset changed since.
        DatasetError: the group's metadata, attributes or arrays cannot be read or do not match its
            attributes (damaged storage); reads that hit a bad chunk or a NaN/Inf also raise it.
    """

    def __init__(self, rb: DatasetLike, fingerprint: str, in_memory: bool = False) -> None:
        where = _where(rb)
        hint = f"run `vla-embed dataset={where} encoder=<the encoder config>` to (re)compute them"
        emb = embeddings_group(rb)
        found = find_groups(emb, fingerprint)
        if not found:
            stored = child_names(emb) if emb is not None else []
            raise StaleEmbeddingsError(
                f"{where}: no embeddings for encoder fingerprint {fingerprint!r} (stored: {stored or 'none'}); "
                f"the encoder's model, weights, layer, token settings or preprocessing differ from every "
                f"stored set; {hint}"
            )
        # Several groups of one encoder exist when a renamed copy was embedded before lookups went
        # by identity: use the first complete and up-to-date one (the exact name first).
        first_error: StaleEmbeddingsError | None = None
        for name in found:
            try:
                self._open(rb, emb, fingerprint, name, hint)
                break
            except StaleEmbeddingsError as e:
                first_error = first_error or e
        else:
            assert first_error is not None
            raise first_error
        # in_memory: read every array once (tokens of a dataset are small next to its frames), so
        # training steps index RAM instead of decompressing zarr chunks.
        self._arrays: dict[str, Any] = {}
        if in_memory:
            self._arrays = {n: self.read_array(n) for n in self.array_names}

    def _open(self, rb: DatasetLike, emb: Any, fingerprint: str, name: str, hint: str) -> None:
        where = _where(rb)
        gfile = f"{where}/{EMBEDDINGS_GROUP}/{name}"
        try:
            g = emb[name]
            a = dict(g.attrs)
        except Exception as e:
            raise DatasetError(
                f"{gfile}/zarr.json: unreadable zarr metadata ({type(e).__name__}: {e}); {_recompute_hint(rb)}"
            ) from None
        if not same_encoder(a.get("fingerprint"), fingerprint):
            raise StaleEmbeddingsError(
                f"{where}: embeddings/{name} records fingerprint {a.get('fingerprint')!r}; {hint}"
            )
        if not a.get("complete"):
            raise StaleEmbeddingsError(f"{where}: embeddings/{name} is incomplete (interrupted run); {hint}")
        if a.get("n_frames") != rb.n_frames or a.get("episodes_digest") != episodes_digest(rb):
            raise StaleEmbeddingsError(
                f"{where}: embeddings/{name} cover {a.get('n_frames')} frames / {a.get('n_episodes')} "
                f"episodes but the dataset now has {rb.n_frames} / {rb.n_episodes} (or its episodes changed); {hint}"
            )
        try:
            cameras = [str(c) for c in a["cameras"]]
            separable = bool(a["separable"])
            dim, n_img, L = int(a["dim"]), int(a["tokens_per_image"]), int(a["max_text_len"])
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(
                f"{gfile}/zarr.json: attributes: malformed ({type(e).__name__}: {e}); {_recompute_hint(rb)}"
            ) from None
        self.rb, self.fingerprint, self.name, self.group, self.attrs = rb, fingerprint, name, g, a
        self.cameras: list[str] = cameras
        self.separable: bool = separable
        self.dim: int = dim
        self.tokens_per_image: int = n_img
        self.max_text_len: int = L
        # Open every array now (metadata, shape) so a damaged group fails here, not mid-training.
        n_text = rb.n_episodes if separable else rb.n_frames
        want = {f"image_{c}": (rb.n_frames, n_img, dim) for c in cameras}
        want.update(text=(n_text, L, dim), text_mask=(n_text, L))
        self.array_names: list[str] = list(want)
        try:
            members = dict(g.members())
        except Exception:
            members = {}
        for key, shape in want.items():
            node = members.get(key)
            if node is None:
                try:
                    node = g[key]
                except KeyError:
                    raise DatasetError(
                        f"{gfile}/{key}: missing array in a complete group; {_recompute_hint(rb)}"
                    ) from None
                except Exception as e:
                    raise DatasetError(
                        f"{gfile}/{key}/zarr.json: unreadable zarr metadata ({type(e).__name__}: {e}); "
                        f"{_recompute_hint(rb)}"
                    ) from None
            if tuple(getattr(node, "shape", ())) != shape:
                raise DatasetError(
                    f"{gfile}/{key}: shape {getattr(node, 'shape', None)}, expected {shape} from the "
                    f"group's attributes; {_recompute_hint(rb)}"
                )

    @property
    def path(self) -> str:
        """`<store>/embeddings/<name>`: the group's path, for messages."""
        return f"{_where(self.rb)}/{EMBEDDINGS_GROUP}/{self.name}"

    def _rows_are_frames(self, key: str) -> bool:
        return key.startswith("image_") or not self.separable

    def _refuse_non_finite(self, key: str, x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """`x` unless it holds NaN/Inf: then DatasetError naming the array, the row and its episode."""
        bad = first_non_finite(x)
        if bad is None:
            return x
        row = int(rows[bad[0]]) if rows is not None else bad[0]
        if self._rows_are_frames(key):
            ep = int(frame_episodes(self.rb, np.asarray([row]))[0])
            at = f"frame {row} (episode {ep})"
        else:
            at = f"the instruction of episode {row}"
        raise DatasetError(
            f"{self.path}/{key}: non-finite token ({bad[2]}) at {at}; {_recompute_hint(self.rb)}"
        )

    def _decode(self, key: str, read: Callable[[], np.ndarray], rows: np.ndarray | None = None) -> np.ndarray:
        """`read()` with a chunk decode error as DatasetError naming the chunk file (or the array)."""
        try:
            x = np.asarray(read())
        except IndexError:
            raise
        except Exception as e:
            arr = self.group[key]
            problems = check_chunks(arr, f"{self.path}/{key}", int(arr.shape[0]), None, require_files=False)
            at = "; ".join(str(p) for p in problems) or f"{self.path}/{key}: {type(e).__name__}: {e}"
            raise DatasetError(f"cannot read {at}; {_recompute_hint(self.rb)}") from None
        return self._refuse_non_finite(key, x, rows)

    def read_array(self, key: str) -> np.ndarray:
        """A whole stored array (`image_<cam>`, `text`, `text_mask`) in memory, checked as it is read."""
        if key not in self.array_names:
            raise KeyError(f"{self.path}: no array {key!r}; have {self.array_names}")
        if key in getattr(self, "_arrays", {}):
            return self._arrays[key]
        return self._decode(key, lambda: self.group[key][:])

    def verify(self) -> None:
        """Decode every chunk of every array and check tokens are finite (what training will read).

        Raises DatasetError listing each bad chunk file or array.
        """
        problems = []
        for key in self.array_names:
            arr = self.group[key]
            problems += check_chunks(
                arr, f"{self.path}/{key}", int(arr.shape[0]), None, require_files=False, check_finite=True
            )
        if len(problems) == 1:
            raise DatasetError(f"{problems[0]}; {_recompute_hint(self.rb)}")
        if problems:
            lines = "\n  ".join(str(p) for p in problems)
            raise DatasetError(
                f"{self.path}: unreadable embeddings, {len(problems)} problems; {_recompute_hint(self.rb)}:"
                f"\n  {lines}"
            )

    def _array(self, name: str) -> Any:
        return self._arrays.get(name, self.group[name]) if self._arrays else self.group[name]

    def _rows(self, key: str, idx: np.ndarray) -> np.ndarray:
        """Rows `idx` of a stored array, through `_decode` (bad chunk or NaN/Inf -> DatasetError)."""
        arr = self._array(key)
        return self._decode(key, lambda: _take(arr, idx), idx)

    @classmethod
    def for_encoder(cls, rb: DatasetLike, enc: FrozenEncoder) -> EmbeddingStore:
        return cls(rb, enc.fingerprint)

    def _camera(self, key: str) -> str:
        cam = key.removeprefix("image_")
        if cam not in self.cameras:
            raise KeyError(f"embeddings/{self.name}: no camera {key!r}; have {self.cameras}")
        return cam

    def image_tokens(
        self, key: str, frame_indices: np.ndarray | Sequence[int], dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """(n, tokens_per_image, D) tokens of camera `key` (`front` or `image_front`) at the frames, as
        `dtype` (float16 keeps the stored precision at half the memory of float32)."""
        idx = np.asarray(frame_indices, dtype=np.int64)
        rows = self._rows(f"image_{self._camera(key)}", idx)
        return torch.from_numpy(rows).to(dtype)

    def text_tokens(self, episode: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Separable encoders: (L, D) float32 tokens and (L,) bool mask of one episode's instruction."""
        if not self.separable:
            raise StaleEmbeddingsError(
                f"embeddings/{self.name}: text tokens of a generative encoder are per frame; "
                "use encoder_output(frame_indices)"
            )
        if not 0 <= episode < self.rb.n_episodes:
            raise IndexError(f"episode {episode} out of range 0..{self.rb.n_episodes - 1}")
        row = np.asarray([episode])
        return (
            torch.from_numpy(self._rows("text", row)[0].astype(np.float32)),
            torch.from_numpy(self._rows("text_mask", row)[0]),
        )

    def encoder_output(self, frame_indices: np.ndarray | Sequence[int]) -> EncoderOutput:
        """What `enc.encode` returns for these frames (cameras in stored order, then text)."""
        idx = np.asarray(frame_indices, dtype=np.int64)
        parts = []
        for c in self.cameras:
            t = self.image_tokens(c, idx)
            parts.append(
                EncoderOutput(t, torch.ones(t.shape[:2], dtype=torch.bool), {c: slice(0, t.shape[1])})
            )
        rows = frame_episodes(self.rb, idx) if self.separable else idx
        text = torch.from_numpy(self._rows("text", rows).astype(np.float32))
        mask = torch.from_numpy(self._rows("text_mask", rows).astype(bool))
        parts.append(EncoderOutput(text, mask, {"text": slice(0, text.shape[1])}))
        return EncoderOutput.concat(parts)


def _take(arr: Any, idx: np.ndarray) -> np.ndarray:
    """Rows `idx` of a zarr array, reading each distinct row once (orthogonal selection)."""
    if idx.size == 0:
        return np.zeros((0, *arr.shape[1:]), dtype=arr.dtype)
    if idx.min() < 0 or idx.max() >= arr.shape[0]:
        raise IndexError(f"frame index out of range 0..{arr.shape[0] - 1}")
    if isinstance(arr, np.ndarray):
        return arr[idx]
    uniq, inv = np.unique(idx, return_inverse=True)
    return np.asarray(arr.oindex[uniq])[inv]
