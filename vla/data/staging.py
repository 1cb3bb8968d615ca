"""Writing the output store so that a failed or repeated run never damages an existing one.

The importer writes into a hidden temporary sibling (``.<name>.tmp-<random>`` in the same directory,
so the final move is a rename on one file system) and only a complete store is moved into place.
With ``overwrite`` the old store is first renamed aside, then the new one renamed in, then the old one
deleted: at every instant `out` is either the complete old store or the complete new one.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def check_destination(out: str | Path, overwrite: bool) -> Path:
    """Fail before any work when `out` exists and may not be replaced."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: output exists; pass overwrite=true (--overwrite) to replace it")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory (a zarr store is a directory)")
    return out


@contextlib.contextmanager
def staged_output(out: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path to write the store to; move it to `out` when the block succeeds.

    On any exception the temporary store is deleted and `out` is left untouched.
    """
    out = check_destination(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{out}: the importer wrote nothing to {tmp}")
        # Checked again: another run may have created `out` while this one was converting.
        check_destination(out, overwrite)
        if out.exists():
            old = out.parent / f".{out.name}.old-{tag}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
