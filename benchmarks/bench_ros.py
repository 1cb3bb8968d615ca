"""Observation-to-command latency and control-rate jitter through the ROS 2 policy node.

    python -m benchmarks.bench_ros [--seconds 8] [--image-hw 224 224] [--rate 20]
        [--factory benchmarks.bench_ros:make_collaborators]

The robot node (mock hardware, `ros_bridge.mock_hardware`) and the policy node each run in their
own process through `python -m ros_bridge.run`, over loopback DDS; this process only listens.
With the default factory the chunk source and gate cost ~nothing, so the figures are the
bridge's own overhead (image conversion, DDS, executor); pass a real factory to include a model.
Variants: 1 camera vs 2 cameras, side by side, with ratios. Prints a table and writes
benchmarks/results/bench_ros.json.

Figures:
- obs_to_publish_ms: joint-state header stamp (robot clock) -> policy status stamp taken right
  after the trajectory was published; includes the observation's age when the tick started.
- obs_to_receipt_ms: same start -> the trajectory's arrival here (what a controller would see).
- compute_ms: tick start -> command published inside the node (decode, the controller's step).
- rate_hz / jitter_ms: achieved tick rate from consecutive status stamps and the std of the
  tick intervals; late_ticks: intervals > 1.5 periods.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ros_bridge.config import PolicyNodeConfig, RobotNodeConfig, to_dict
from ros_bridge.interfaces import Collaborators, Command, Observation

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"


class _HoldPoseController:
    """A controller that commands the observed position: free to compute, always safe."""

    def reset(self) -> None:
        pass

    def step(self, obs: Observation) -> Command:
        q = np.asarray(obs.joint_positions, np.float64)
        return Command(q.copy(), q[None].copy(), "ok")

    def stop(self, obs: Observation | None, reason: str) -> Command | None:
        return None

    def summary(self) -> dict:
        return {}


def make_collaborators(config: PolicyNodeConfig) -> Collaborators:
    """Default factory: the bridge's overhead alone."""
    return Collaborators(controller=_HoldPoseController())


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p99": float("nan"), "n": 0}
    arr = np.asarray(values)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "n": len(values)}


def run_variant(cameras: tuple[str, ...], args: argparse.Namespace, workdir: Path) -> dict:
    import rclpy.node
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from ros_bridge.run import RosRuntime, wait_until

    policy_cfg = PolicyNodeConfig(
        camera_names=cameras, control_rate_hz=args.rate, n_action_steps=1, instruction="benchmark"
    )
    robot_cfg = RobotNodeConfig(
        camera_names=cameras,
        command_rate_hz=100.0,
        joint_state_rate_hz=100.0,
        camera_rate_hz=args.camera_rate,
    )
    tag = f"{len(cameras)}cam"
    (workdir / f"policy_{tag}.json").write_text(json.dumps(to_dict(policy_cfg)))
    (workdir / f"robot_{tag}.json").write_text(json.dumps(to_dict(robot_cfg)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    base = [sys.executable, "-m", "ros_bridge.run"]
    robot_kwargs = json.dumps({"image_hw": list(args.image_hw)})
    procs = [
        subprocess.Popen(
            [
                *base,
                *("robot", "--factory", "ros_bridge.mock_hardware:make_mock_hardware"),
                *("--factory-kwargs", robot_kwargs, "--config", str(workdir / f"robot_{tag}.json")),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [*base, "policy", "--factory", args.factory, "--config", str(workdir / f"policy_{tag}.json")],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
    statuses: list[tuple[float, dict]] = []
    trajectories: list[float] = []
    recording = threading.Event()
    try:
        with RosRuntime() as ros:
            node = ros.add(rclpy.node.Node("bench_listener", context=ros.context))

            def on_status(msg: String) -> None:
                if recording.is_set():
                    statuses.append((time.time(), json.loads(msg.data)))

            def on_traj(msg: JointTrajectory) -> None:
                if recording.is_set():
                    trajectories.append(time.time())

            node.create_subscription(String, policy_cfg.status_topic, on_status, 100)
            node.create_subscription(JointTrajectory, policy_cfg.trajectory_topic, on_traj, 100)
            seen: list[dict] = []
            node.create_subscription(
                String, policy_cfg.status_topic, lambda m: seen.append(json.loads(m.data)), 100
            )
            wait_until(
                lambda: any(s["state"] == "running" for s in seen), 60.0, what="the policy node to run"
            )
            time.sleep(args.warmup)
            recording.set()
            time.sleep(args.seconds)
            recording.clear()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    stamps = np.array([s["stamp"] for _, s in statuses])
    intervals = np.diff(stamps) if len(stamps) > 1 else np.zeros(0)
    chunk_statuses = [(r, s) for r, s in statuses if "step_ms" in s and "obs_stamp" in s]
    obs_to_publish = [1e3 * (s["stamp"] - s["obs_stamp"]) for _, s in chunk_statuses]
    compute = [s["step_ms"] for _, s in chunk_statuses]
    # Pair each trajectory with the status its tick published right after it: the nearest status
    # stamp (ticks are a period apart, publication within a millisecond or so).
    period = 1.0 / args.rate
    obs_to_receipt = []
    sent = np.array([s["stamp"] for _, s in chunk_statuses])
    for t in trajectories:
        if sent.size:
            i = int(np.abs(sent - t).argmin())
            if abs(sent[i] - t) < period / 2:
                obs_to_receipt.append(1e3 * (t - chunk_statuses[i][1]["obs_stamp"]))
    return {
        "cameras": len(cameras),
        "image_hw": list(args.image_hw),
        "ticks": len(statuses),
        "chunks": len(chunk_statuses),
        "holds": sum(1 for _, s in statuses if s["state"] == "holding"),
        "rate_hz": float(1.0 / intervals.mean()) if intervals.size else float("nan"),
        "jitter_ms": float(1e3 * intervals.std()) if intervals.size else float("nan"),
        "late_ticks": int((intervals > 1.5 * period).sum()),
        "obs_to_publish_ms": _percentiles(obs_to_publish),
        "obs_to_receipt_ms": _percentiles(obs_to_receipt),
        "compute_ms": _percentiles(compute),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="measurement window per variant")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--rate", type=float, default=20.0, help="policy control rate [Hz]")
    ap.add_argument("--camera-rate", type=float, default=30.0, help="robot camera rate [Hz]")
    ap.add_argument("--image-hw", type=int, nargs=2, default=(224, 224))
    ap.add_argument("--factory", default="benchmarks.bench_ros:make_collaborators")
    ap.add_argument(
        "--out", type=Path, default=RESULTS / "bench_ros.json", help="JSON path (default %(default)s)"
    )
    args = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))

    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_variant(cams, args, Path(tmp)) for cams in (("front",), ("front", "wrist"))]

    head = (
        f"{'cams':>4} {'rate Hz':>8} {'jitter ms':>9} {'late':>5} {'holds':>5} "
        f"{'obs->pub p50/p99 ms':>20} {'obs->recv p50/p99 ms':>21} {'compute p50/p99 ms':>19}"
    )
    print(
        f"target {args.rate:.0f} Hz, images {args.image_hw[0]}x{args.image_hw[1]}, {args.seconds:.0f} s per variant"
    )
    print(head)
    for r in rows:

        def pp(key: str, r: dict = r) -> str:
            return f"{r[key]['p50']:.1f} / {r[key]['p99']:.1f}"

        print(
            f"{r['cameras']:>4} {r['rate_hz']:>8.2f} {r['jitter_ms']:>9.2f} {r['late_ticks']:>5} {r['holds']:>5} "
            f"{pp('obs_to_publish_ms'):>20} {pp('obs_to_receipt_ms'):>21} {pp('compute_ms'):>19}"
        )
    one, two = rows
    ratios = {
        key: two[key]["p50"] / one[key]["p50"]
        for key in ("obs_to_publish_ms", "obs_to_receipt_ms", "compute_ms")
    }
    print("2 cams / 1 cam (p50): " + ", ".join(f"{k} x{v:.2f}" for k, v in ratios.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "config": {
            k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
        },
        "variants": rows,
        "ratio_2cam_over_1cam_p50": ratios,
    }
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
