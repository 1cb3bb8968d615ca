"""`vla-dataset`: inspect, validate, convert and compute statistics of native zarr v3 datasets.

Plain argparse (not a Hydra entry point): each subcommand takes a store path.

    vla-dataset info PATH [--json] [--instructions N]
    vla-dataset validate PATH [--quick]
    vla-dataset import-dp SRC DST [--camera front] [--fps 10] [--robot NAME] [--instruction TEXT] [--max-episodes N]
    vla-dataset stats PATH [--keys state action]
    vla-dataset export --format lerobot_v3 SRC DST [--fps-from-store] [--overwrite]
    vla-dataset export --format mcap SRC DST [--episode N] [--images raw|png|jpeg] [--overwrite]
    vla-dataset view PATH [episode=N] [--out FILE.rrd] [--spawn]
    vla-dataset merge SRC [SRC ...] DST [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from vla.data.errors import DatasetError


def _other_groups(rb: Any) -> list[str]:
    """Groups besides data/ and meta/ (embeddings/, stats/); a damaged one is listed, not fatal
    (`vla-dataset validate` names the file)."""
    try:
        return sorted(n for n, _ in rb.root.members() if n not in ("data", "meta"))
    except Exception as e:  # zarr raises several types for a corrupt zarr.json
        return [f"(unreadable group metadata: {type(e).__name__}; run vla-dataset validate)"]


def _summary(path: str) -> dict[str, Any]:
    from vla.data import ReplayBuffer
    from vla.data.format import FORMAT_VERSION

    rb = ReplayBuffer.open(path)
    lengths = rb.episode_lengths
    keys = {}
    for k in rb.keys:
        arr = rb.array(k)
        spec = rb.meta.keys.get(k)
        keys[k] = {
            "shape": list(rb.shape(k)),
            "dtype": str(rb.dtype(k)),
            "chunks": list(arr.chunks),
            "codecs": [type(c).__name__ for c in arr.compressors],
            "units": spec.units if spec else "",
            "description": spec.description if spec else "",
        }
    try:
        stats_keys = sorted(rb.load_stats(allow_stale=True))
    except Exception:
        stats_keys = []
    return {
        "path": str(rb.path),
        "format_version": FORMAT_VERSION,
        "robot": rb.meta.robot,
        "fps": rb.meta.fps,
        "n_episodes": rb.n_episodes,
        "n_frames": rb.n_frames,
        "duration_s": rb.n_frames / rb.meta.fps,
        "episode_length": {
            "min": int(lengths.min()) if len(lengths) else 0,
            "mean": float(lengths.mean()) if len(lengths) else 0.0,
            "max": int(lengths.max()) if len(lengths) else 0,
        },
        "joint_names": rb.meta.joint_names,
        "camera_names": rb.meta.camera_names,
        "keys": keys,
        "instructions": rb.instructions,
        "stats": stats_keys,
        "other_groups": _other_groups(rb),
        "extra": rb.meta.extra,
    }


def cmd_info(args: argparse.Namespace) -> int:
    s = _summary(args.path)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    el = s["episode_length"]
    print(f"{s['path']}  (vla-replay-buffer v{s['format_version']})")
    print(f"  robot       {s['robot']}   fps {s['fps']:g}")
    print(
        f"  episodes    {s['n_episodes']}   frames {s['n_frames']}   duration {s['duration_s']:.1f} s   "
        f"episode length min/mean/max {el['min']}/{el['mean']:.1f}/{el['max']}"
    )
    print(f"  joints      {', '.join(s['joint_names']) or '-'}")
    print(f"  cameras     {', '.join(s['camera_names']) or '-'}")
    print("  keys:")
    for k, v in s["keys"].items():
        shape = "(N, " + ", ".join(map(str, v["shape"])) + ")" if v["shape"] else "(N,)"
        units = f"  [{v['units']}]" if v["units"] else ""
        print(f"    {k:<16} {shape:<18} {v['dtype']:<8} chunks {tuple(v['chunks'])!s:<18}{units}")
    print(f"  stats       {', '.join(s['stats']) or 'none (vla-dataset stats PATH)'}")
    if s["other_groups"]:
        print(f"  groups      {', '.join(s['other_groups'])}")
    counts = Counter(s["instructions"])
    print(f"  instructions ({len(counts)} distinct):")
    for text, n in counts.most_common(args.instructions):
        print(f"    {n:>5} x {text!r}")
    if len(counts) > args.instructions:
        print(f"    ... {len(counts) - args.instructions} more (--instructions N)")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from vla.data import validate_store

    lay = validate_store(args.path, deep=not args.quick)
    for note in lay.notes:
        print(f"note: {note}")
    for p in lay.problems:
        print(f"problem: {p}")
    if lay.problems:
        print(f"INVALID: {len(lay.problems)} problem(s) in {args.path}")
        return 1
    what = "structure" if args.quick else "structure and every chunk"
    print(f"OK: {args.path}: {lay.n_episodes} episodes, {lay.n_frames} frames ({what} checked)")
    return 0


def _parse_rename(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise DatasetError(f"--rename {it!r}: expected SRC=DST")
        a, b = it.split("=", 1)
        out[a] = b
    return out


def cmd_import_dp(args: argparse.Namespace) -> int:
    """Shorthand for `vla-convert convert=dp_pusht`: the same importer (`vla.convert.dp`)."""
    from vla.convert.dp import DiffusionPolicyOptions, import_dp

    opts = DiffusionPolicyOptions(
        camera=args.camera,
        fps=args.fps,
        robot=args.robot,
        instruction=args.instruction,
        image_max=args.image_max,
        rename=_parse_rename(args.rename) or None,
        max_episodes=args.max_episodes,
    )
    print(import_dp(args.src, args.dst, opts, overwrite=args.overwrite, progress=False))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Append the episodes of the sources, in order, to a new store (atomically)."""
    from vla.data import ReplayBuffer
    from vla.data.merge import merge_stores

    out = merge_stores(args.src, args.dst, overwrite=args.overwrite)
    rb = ReplayBuffer.open(out)
    print(
        f"[vla-dataset] merged {len(args.src)} stores into {out}: {rb.n_episodes} episodes, {rb.n_frames} frames"
    )
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from vla.data import ReplayBuffer, compute_stats

    rb = ReplayBuffer.open(args.path, mode="a")
    stats = compute_stats(rb, keys=args.keys)
    rb.save_stats(stats)
    np.set_printoptions(precision=4, suppress=True, linewidth=150)
    for k, s in stats.items():
        print(f"{k}:")
        for name, v in s.items():
            print(f"  {name:<5} {v}")
    print(f"saved statistics of {sorted(stats)} in {rb.path}/stats ({rb.n_frames} frames)")
    return 0


def _wire_names(path: str) -> dict[str, str]:
    """The store's robot description (configs/robot/<robot>.yaml): dataset joint name -> wire name."""
    from omegaconf import OmegaConf

    from vla.data import ReplayBuffer
    from vla.paths import CONFIG_DIR

    robot = CONFIG_DIR / "robot" / f"{ReplayBuffer.open(path).meta.robot}.yaml"
    if not robot.is_file():
        return {}
    cfg = OmegaConf.to_container(OmegaConf.load(robot))
    ds, wire = cfg.get("dataset_joint_names") or [], cfg.get("joint_names") or []
    return dict(zip(ds, wire)) if len(ds) == len(wire) else {}


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "mcap":
        from vla.convert.export_mcap import McapExportOptions, export_mcap

        mopts = McapExportOptions(episode=args.episode, images=args.images, wire_names=_wire_names(args.src))
        print(export_mcap(args.src, args.dst, mopts, overwrite=args.overwrite, progress=False))
        return 0
    from vla.convert.export_lerobot import ExportOptions, export_lerobot

    if args.episode is not None:
        raise SystemExit("vla-dataset export: --episode is only supported with --format mcap")

    opts = ExportOptions(fps_from_store=args.fps_from_store, crf=args.crf, pix_fmt=args.pix_fmt)
    print(export_lerobot(args.src, args.dst, opts, overwrite=args.overwrite, progress=False))
    return 0


def cmd_view(args: argparse.Namespace) -> int:
    from vla.data.viewer import ViewOptions, view_episode

    opts = ViewOptions(episode=args.episode, out=args.out, spawn=args.spawn, max_frames=args.max_frames)
    print(view_episode(args.path, opts))
    return 0


# `vla-dataset view PATH episode=3 out=x.rrd`: the key=value spelling of the other vla-* commands.
_VIEW_KEYS = {"episode": "--episode", "out": "--out", "max_frames": "--max-frames"}


def _view_argv(argv: list[str]) -> list[str]:
    """`view` arguments in key=value form (episode=3) rewritten as options (--episode 3)."""
    if not argv or argv[0] != "view":
        return argv
    out = []
    for a in argv:
        key, eq, value = a.partition("=")
        if eq and key in _VIEW_KEYS:
            out += [_VIEW_KEYS[key], value]
        else:
            out.append(a)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vla-dataset",
        description="Inspect, validate and convert vla datasets (zarr v3 stores, see docs/dataset_format.md).",
        epilog="examples:\n  vla-dataset info outputs/demos/pick_cube.zarr\n  vla-dataset validate "
        "outputs/demos/pick_cube.zarr\n  vla-dataset stats outputs/demos/pick_cube.zarr --keys state action\n"
        "--debug (or VLA_DEBUG=1) prints full tracebacks.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("info", help="summary: episodes, frames, keys with shapes/dtypes, fps, instructions")
    s.add_argument("path", help="dataset store (directory)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument(
        "--instructions", type=int, default=10, metavar="N", help="show the N most common instructions"
    )
    s.set_defaults(func=cmd_info)

    s = sub.add_parser(
        "validate",
        help="check structure and chunks; print each problem with its array and episode; exit 1 on problems",
    )
    s.add_argument("path", help="dataset store (directory)")
    s.add_argument("--quick", action="store_true", help="skip reading every chunk (metadata and shapes only)")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser(
        "import-dp",
        help="convert a Diffusion Policy zarr v2 ReplayBuffer (data/img, data/state, ..., meta/episode_ends)",
        description="Convert a Diffusion Policy zarr v2 ReplayBuffer (directory or .zip, e.g. PushT) into "
        "the native format: data/img -> data/image_<camera> uint8, float64 -> float32, other keys kept.",
    )
    s.add_argument("src", help="source store (directory or .zarr.zip)")
    s.add_argument("dst", help="destination native store (directory)")
    s.add_argument("--camera", default="front", help="camera name for data/img (default: front)")
    s.add_argument("--fps", type=float, default=10.0, help="control rate of the source in Hz (PushT: 10)")
    s.add_argument("--robot", default="diffusion_policy", help="robot name stored in the metadata")
    s.add_argument("--instruction", default="", help="instruction text for every episode")
    s.add_argument("--image-max", type=float, default=255.0, help="value of white in float images (255 or 1)")
    s.add_argument(
        "--rename", action="append", default=[], metavar="SRC=DST", help="rename a key (repeatable)"
    )
    s.add_argument(
        "--max-episodes", type=int, default=None, metavar="N", help="import only the first N episodes"
    )
    s.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    s.set_defaults(func=cmd_import_dp)

    s = sub.add_parser(
        "merge",
        help="join stores into a new one, episodes in the order given (written atomically; for "
        "vla-collect shards use `vla-collect ... num_shards=N merge=true`, which also makes up their failures)",
    )
    s.add_argument("src", nargs="+", help="source stores (same fps, robot, joints, cameras, keys)")
    s.add_argument("dst", help="the new store")
    s.add_argument("--overwrite", action="store_true", help="replace DST if it exists (atomically)")
    s.set_defaults(func=cmd_merge)

    s = sub.add_parser("stats", help="compute min/max/mean/std of low-dim keys and store them in the dataset")
    s.add_argument("path", help="dataset store (directory)")
    s.add_argument("--keys", nargs="+", default=None, help="keys (default: every non-image key)")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser(
        "export",
        help="write a native store in another format (LeRobotDataset v3: parquet + H.264 MP4; "
        "mcap: rosbag2 bags viewable in Foxglove)",
        description="Write the native store SRC as a LeRobotDataset v3.0 directory DST (meta/, data/, "
        "videos/; `vla.convert.export_lerobot`). Low-dim keys are exact, images go through H.264 (lossy). "
        "--format mcap: a directory of rosbag2 bags with mcap storage, one per episode, viewable in "
        "Foxglove and read back by `vla-convert convert=ur5e_rosbag` (`vla.convert.export_mcap`; "
        "/joint_states, /arm/command, /camera/<cam>/image_raw, /instruction; exact with raw or png images).",
        epilog="examples:\n  vla-dataset export --format lerobot_v3 outputs/demos/pick_cube.zarr "
        "outputs/demos/pick_cube_lerobot\n  vla-dataset export --format mcap outputs/demos/pick_cube.zarr "
        "outputs/demos/pick_cube_mcap --episode 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("src", help="native store (directory)")
    s.add_argument("dst", help="destination directory (written to a temporary sibling, then renamed)")
    s.add_argument("--format", required=True, choices=["lerobot_v3", "mcap"], help="output format")
    s.add_argument(
        "--fps-from-store",
        action="store_true",
        help="write a non-integer store fps as is (LeRobot's fps is an int; refused otherwise)",
    )
    s.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better (default: 18)")
    s.add_argument(
        "--pix-fmt",
        default="yuv444p",
        choices=["yuv444p", "yuv420p"],
        help="video pixel format (default yuv444p: full colour; yuv420p: for hardware decoders)",
    )
    s.add_argument(
        "--episode", type=int, default=None, metavar="N", help="mcap: export only episode N (default: all)"
    )
    s.add_argument(
        "--images",
        default="raw",
        choices=["raw", "png", "jpeg"],
        help="mcap: sensor_msgs/Image rgb8 (raw, default) or CompressedImage png (lossless) / jpeg",
    )
    s.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser(
        "view",
        help="show an episode in the rerun viewer: cameras, state vs action per joint, other keys, "
        "the instruction (headless: writes an .rrd file)",
        description="Show one episode of a native store with rerun (`vla.data.viewer`; optional extra: "
        "pip install -e '.[viz]'): each camera, one plot per joint with measured state and commanded "
        "action, the other low-dim keys, and the instruction, on `frame` and `time` timelines. With a "
        "display it opens a viewer window; without one (or with --out) it writes an .rrd file to open "
        "later with `rerun FILE.rrd`.",
        epilog="examples:\n  vla-dataset view outputs/demos/pick_cube.zarr episode=3\n  vla-dataset view "
        "outputs/demos/pick_cube.zarr --episode -1 --out last.rrd   # then: rerun last.rrd",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument("path", help="native store (directory)")
    s.add_argument(
        "--episode", type=int, default=0, metavar="N", help="episode index, negative from the end (default 0)"
    )
    s.add_argument(
        "--out",
        default=None,
        metavar="FILE.rrd",
        help="write the recording here (default without a display: ./<store>_episode<N>.rrd)",
    )
    s.add_argument("--spawn", action="store_true", help="open a viewer window (needs a display)")
    s.add_argument("--max-frames", type=int, default=None, metavar="N", help="only the first N frames")
    s.set_defaults(func=cmd_view)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from vla.cli.app import debug_enabled, guarded

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(argv)
    args = build_parser().parse_args(_view_argv([a for a in argv if a != "--debug"]))
    # One line per refusal, quiet on a closed pipe (`vla-dataset info X | head`), 130 on Ctrl-C.
    return guarded("vla-dataset", lambda: int(args.func(args)), debug)


if __name__ == "__main__":
    sys.exit(main())
