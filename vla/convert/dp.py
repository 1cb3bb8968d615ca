"""Diffusion Policy zarr (v2 ReplayBuffer) through `vla-convert`: a staged, dry-runnable wrapper around
`vla.data.import_dp.import_diffusion_policy` (which owns the conversion itself)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vla.convert.errors import ConvertError
from vla.convert.report import ConvertReport, EpisodeReport
from vla.convert.sink import destination
from vla.data import FORMAT_NAME, DatasetError, ReplayBuffer
from vla.progress import progress_bar


@dataclass
class DiffusionPolicyOptions:
    """Arguments of `import_diffusion_policy` (see there): camera name of data/img, fps, robot,
    instruction for every episode, image_max (white of float images), rename {src_key: dst_key}."""

    camera: str = "front"
    fps: float = 10.0
    robot: str = "diffusion_policy"
    instruction: str = ""
    image_max: float = 255.0
    rename: dict[str, str] | None = None


def _source_plan(src: Path) -> tuple[np.ndarray, dict[str, tuple[tuple[int, ...], str]]]:
    """(episode_ends, {key: (shape, dtype)}) of the source, read without converting anything."""
    import zarr

    try:
        if src.is_file():
            from zarr.storage import ZipStore

            root = zarr.open_group(store=ZipStore(str(src), mode="r"), mode="r")
        else:
            root = zarr.open_group(store=str(src), mode="r")
        if root.attrs.get("format") == FORMAT_NAME:
            raise ConvertError(
                f"{src}: already a native vla store (attribute format = {FORMAT_NAME!r}), not a DP one"
            )
        ends = np.asarray(root["meta/episode_ends"][:], dtype=np.int64)
        arrays = {
            k: (tuple(a.shape), str(a.dtype)) for k, a in root["data"].members() if isinstance(a, zarr.Array)
        }
    except ConvertError:
        raise
    except Exception as e:
        raise ConvertError(f"{src}: not a Diffusion Policy zarr store ({type(e).__name__}: {e})") from None
    return ends, arrays


def _watch(tmp: Path, bar: tqdm, stop: threading.Event) -> None:
    """Advance the bar as the writer commits episodes (it rewrites meta/zarr.json at each commit)."""
    meta = tmp / "meta" / "zarr.json"
    while not stop.wait(0.2):
        try:
            n = int(json.loads(meta.read_text())["attributes"].get("n_episodes", 0))
        except (OSError, ValueError, KeyError):
            continue
        bar.update(max(0, n - bar.n))


def import_dp(
    src: str | Path,
    out: str | Path,
    opts: DiffusionPolicyOptions | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Convert a Diffusion Policy store (directory or .zip) into a native store at `out`."""
    opts = opts or DiffusionPolicyOptions()
    src = Path(src)
    if not src.exists():
        raise ConvertError(f"{src}: no such Diffusion Policy store")
    ends, arrays = _source_plan(src)
    report = ConvertReport("diffusion_policy", str(src), str(out), opts.fps, dry_run=dry_run)
    starts = np.concatenate([[0], ends[:-1]]) if ends.size else ends
    keys = {k: list(s[1:]) for k, (s, _) in arrays.items()}
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        report.episodes.append(
            EpisodeReport(source=f"episode {i}", n_frames=int(e - s), instruction=opts.instruction, keys=keys)
        )
    with destination(out, overwrite, dry_run) as tmp:
        if tmp is None:
            report.notes.append(
                "dry run: source keys listed as stored; data/img becomes image_" + opts.camera + " (uint8)"
            )
            return report
        bar = progress_bar(total=len(ends), desc="episodes", unit="ep", disable=not progress)
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(tmp, bar, stop), daemon=True)
        watcher.start()
        try:
            from vla.data.import_dp import import_diffusion_policy

            res = import_diffusion_policy(
                src,
                tmp,
                camera=opts.camera,
                fps=opts.fps,
                robot=opts.robot,
                instruction=opts.instruction,
                image_max=opts.image_max,
                rename=opts.rename,
                overwrite=False,
            )
        except DatasetError as e:
            raise ConvertError(str(e).replace(str(tmp), str(out))) from None
        finally:
            stop.set()
            watcher.join()
        bar.update(len(ends) - bar.n)
        bar.close()
        rb = ReplayBuffer.open(tmp)
        written = {k: list(rb.shape(k)) for k in rb.keys}
        for ep in report.episodes:
            ep.keys = written
        report.notes += str(res).replace(str(tmp), str(out)).splitlines()[1:]
    return report
