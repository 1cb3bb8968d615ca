"""Import throughput of `vla-convert` for rosbag2 bags with images (messages/s and frames/s).

    python -m benchmarks.bench_convert [--seconds 15] [--size 96] [--cam-hz 30] [--js-hz 200] [--repeats 3]

Writes one teleoperation bag per storage plugin (mcap, sqlite3) with `rosbags` (2 cameras size x size
rgb8 at cam-hz, JointState at js-hz, JointTrajectory commands at 50 Hz, instruction), then times, per
storage, three stages side by side:

- ``read``: rosbags only (iterate + deserialize every message): the floor any importer pays;
- ``dry-run``: + decode images, select joints, align onto the 20 Hz clock (no output);
- ``import``: the full conversion into a zarr store (staged, then moved into place).

Prints a table (best of `repeats`; ratios to mcap ``import``) and writes benchmarks/results/bench_convert.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "bench_convert.json"
# The bag writer is the test fixture (real rosbags Writer, standard Kilted message definitions).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "convert"))


def _read_only(bag: Path) -> int:
    from rosbags.highlevel import AnyReader

    n = 0
    with AnyReader([bag]) as reader:
        for conn, _, raw in reader.messages():
            reader.deserialize(raw, conn.msgtype)
            n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=15.0, help="recording length (300 frames at 20 Hz)")
    p.add_argument("--size", type=int, default=96, help="image height and width")
    p.add_argument("--cam-hz", type=float, default=30.0)
    p.add_argument("--js-hz", type=float, default=200.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()

    from convert_fixtures import rosbag_mapping_dict, write_bag

    from vla.convert import RosbagMapping, import_rosbag

    mapping = RosbagMapping.from_dict(rosbag_mapping_dict())
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        for storage in ("mcap", "sqlite3"):
            bag = Path(tmp) / f"bag_{storage}"
            write_bag(
                bag,
                storage,
                duration_s=args.seconds,
                cam_hz=args.cam_hz,
                js_hz=args.js_hz,
                hw=(args.size, args.size),
                extra_topic=True,
            )
            bag_mb = sum(f.stat().st_size for f in bag.iterdir()) / 1e6
            for stage in ("read", "dry-run", "import"):
                best, n_msgs, n_frames = float("inf"), 0, 0
                for _ in range(args.repeats):
                    out = Path(tmp) / "out.zarr"
                    shutil.rmtree(out, ignore_errors=True)
                    t = time.perf_counter()
                    if stage == "read":
                        n_msgs = _read_only(bag)
                    else:
                        rep = import_rosbag(bag, out, mapping, dry_run=stage == "dry-run", progress=False)
                        # Messages of the mapped topics (state and qvel share /joint_states: count it once).
                        seen: dict[str, int] = {}
                        for s in rep.episodes[0].streams:
                            seen[s.source] = s.n_messages
                        n_msgs = sum(seen.values()) + sum(rep.ignored_topics.values()) + 1
                        n_frames = rep.n_frames
                    best = min(best, time.perf_counter() - t)
                rows.append(
                    {
                        "storage": storage,
                        "stage": stage,
                        "seconds": best,
                        "messages": n_msgs,
                        "frames": n_frames,
                        "messages_per_s": n_msgs / best,
                        "frames_per_s": n_frames / best if n_frames else None,
                        "bag_mb": bag_mb,
                        "bag_mb_per_s": bag_mb / best,
                    }
                )
    ref = next(r for r in rows if r["storage"] == "mcap" and r["stage"] == "import")
    for r in rows:
        r["speed_vs_mcap_import"] = ref["seconds"] / r["seconds"]

    print(
        f"rosbag2 import: {args.seconds:g} s bag, 2 cams {args.size}x{args.size} @ {args.cam_hz:g} Hz, "
        f"joint states @ {args.js_hz:g} Hz, commands @ 50 Hz -> 20 Hz clock (best of {args.repeats})"
    )
    print(
        f"{'storage':<8} {'stage':<8} {'time s':>7} {'msgs':>6} {'msgs/s':>8} {'frames':>6} {'frames/s':>9} {'MB/s':>7} {'vs mcap import':>15}"
    )
    for r in rows:
        fps = f"{r['frames_per_s']:9.1f}" if r["frames_per_s"] else f"{'-':>9}"
        frames = r["frames"] or "-"
        print(
            f"{r['storage']:<8} {r['stage']:<8} {r['seconds']:7.3f} {r['messages']:>6} {r['messages_per_s']:8.0f} "
            f"{frames!s:>6} {fps} {r['bag_mb_per_s']:7.1f} {r['speed_vs_mcap_import']:14.2f}x"
        )
    result = {
        "benchmark": "bench_convert",
        "config": vars(args) | {"out": str(args.out)},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
