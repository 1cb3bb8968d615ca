"""Direct reads of one-frame-per-chunk image arrays, for the training sampler's hot path.

zarr-python's synchronous API hands every read to its event-loop thread; for a training window that
is a few small chunks, that hand-off costs more than decoding them. For arrays written by this
package (chunk ``(1, H, W, 3)``, codecs ``bytes -> blosc -> crc32c``, the format spec's layout) this
module reads the chunk files in the calling thread: verify the CRC32C, blosc-decompress, reshape.
Anything else (other codecs, other stores) is left to zarr: `FrameReader.for_array` returns None.
`benchmarks/bench_sampler.py` measures both paths; tests check they agree bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vla.data.errors import DatasetError


class FrameReader:
    """Reads frames of one image array straight from its chunk files (one frame per chunk)."""

    def __init__(self, array_dir: Path, arr: Any) -> None:
        self._dir = array_dir
        self._encode = arr.metadata.chunk_key_encoding.encode_chunk_key
        self._frame_shape = tuple(int(s) for s in arr.shape[1:])
        self._zeros = (0,) * (arr.ndim - 1)

    @classmethod
    def for_array(cls, array_dir: Path, arr: Any) -> FrameReader | None:
        """A reader when `arr` has exactly the layout this module decodes, else None (use zarr)."""
        from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec

        codecs = list(getattr(arr.metadata, "codecs", ()))
        ok = (
            arr.dtype == np.uint8
            and arr.ndim == 4
            and tuple(arr.chunks) == (1, *arr.shape[1:])
            and len(codecs) == 3
            and isinstance(codecs[0], BytesCodec)
            and isinstance(codecs[1], BloscCodec)
            and isinstance(codecs[2], Crc32cCodec)
            and array_dir.is_dir()
        )
        return cls(array_dir, arr) if ok else None

    def frame(self, f: int) -> np.ndarray:
        """Frame `f` as uint8 (H, W, 3); DatasetError naming the chunk file if missing or damaged."""
        import google_crc32c
        from numcodecs import blosc

        path = self._dir / self._encode((int(f), *self._zeros))
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise DatasetError(f"{path}: chunk: missing chunk file (frame {f})") from None
        body, stored = raw[:-4], raw[-4:]
        if len(raw) < 4 or np.uint32(google_crc32c.value(body)).tobytes() != stored:
            raise DatasetError(f"{path}: chunk: corrupt or truncated chunk (CRC32C mismatch, frame {f})")
        try:
            out = np.frombuffer(blosc.decompress(body), dtype=np.uint8)
            return out.reshape(self._frame_shape)
        except (RuntimeError, ValueError) as e:
            raise DatasetError(f"{path}: chunk: cannot decode frame {f} ({e})") from None

    def frames(self, frames: np.ndarray) -> np.ndarray:
        """Frames (any order, repeats allowed) as uint8 (len(frames), H, W, 3); each file read once."""
        uniq, inverse = np.unique(np.asarray(frames, dtype=np.int64), return_inverse=True)
        decoded = np.stack([self.frame(int(f)) for f in uniq])
        return decoded[inverse.reshape(-1)]
