"""Writing the output store so that a failed or repeated run never damages an existing one.

The importer writes into a hidden temporary sibling (``.<name>.tmp-<random>`` in the same directory,
so the final move is a rename on one file system) and only a complete store is moved into place.
With ``overwrite`` the old store is first renamed aside, then the new one renamed in, then the old one
deleted: at every instant `out` is either the complete old store or the complete new one.

Before the move the staged store goes through the project's validator (`vla.data.validate_store`, the
checks of `vla-dataset validate --quick`: metadata, episode_ends, array lengths, dtypes and shapes
against joint_names, cameras and key names): a writer never puts in place a store that validate or
info would then reject; it refuses with the validator's first problem instead, and `out` is left as
it was. The deep check (every chunk decodes, floats finite) is optional (`deep=True`): the chunks were
just written by `ReplayBuffer`, which refuses non-finite floats, and decoding them again costs ~15 s
on the 25650-frame PushT store (a quarter of its import).
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from vla.data.errors import DatasetError


def check_destination(out: str | Path, overwrite: bool) -> Path:
    """Fail before any work when `out` exists and may not be replaced."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: output exists; pass overwrite=true (--overwrite) to replace it")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory (a zarr store is a directory)")
    return out


def check_staged(tmp: str | Path, out: str | Path, deep: bool = False) -> None:
    """Raise DatasetError with the validator's first problem when the store at `tmp` is invalid.

    Messages name `out` (where the store was going), not the hidden temporary. deep: also decode every
    chunk and check floats are finite (`vla-dataset validate`); False: structure only (`--quick`).
    """
    from vla.data.validate import validate_store

    tmp, out = str(tmp), str(out)
    try:
        problems = validate_store(tmp, deep=deep).problems
    except DatasetError as e:  # not a zarr store at all
        raise DatasetError(f"{out}: the writer produced no valid store: {str(e).replace(tmp, out)}") from None
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DatasetError(
            f"{out}: not written: `vla-dataset validate` would reject the store: "
            f"{str(problems[0]).replace(tmp, out)}{more}"
        )


@contextlib.contextmanager
def staged_output(
    out: str | Path, overwrite: bool, deep: bool = False, validate: bool = True
) -> Iterator[Path]:
    """Yield a temporary path to write the store to; validate it and move it to `out` when the block
    succeeds (`check_staged`; `deep` as there). validate=False: the output is not a native store (an
    export to another format); it is moved into place unchecked, with the same atomicity.

    On any exception, an invalid store included, the temporary store is deleted and `out` is left
    untouched.
    """
    out = check_destination(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = out.parent / f".{out.name}.tmp-{tag}"
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{out}: the importer wrote nothing to {tmp}")
        if validate:
            check_staged(tmp, out, deep=deep)
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
