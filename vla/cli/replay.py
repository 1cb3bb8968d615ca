"""`vla-replay dataset=<store.zarr> episode=<i> target=sim|ros [speed=0.5] [--yes]`.

Composes `configs/replay.yaml` (+ `configs/safety/<name>.yaml` for the gate). `target=sim` replays
the episode open loop in MuJoCo and writes `replay.json` (tracking error per joint, success) and
`side_by_side.mp4` into `out_dir`; `target=ros` sends the actions to the robot through the policy
node and the world-model gate after a confirmation, and writes `replay.json` (chunks, gate verdicts,
why it stopped). The resolved config is saved there as `replay.yaml`.

Exit status: 0 done (ros: completed), 1 stopped by the gate / timeout, 2 bad input or refused.
`--yes` (or `ros.confirm=false`) skips the question; `speed=` is short for `ros.speed=`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, entry

COMMAND = Command(
    prog="vla-replay",
    config="replay",
    summary="replay a recorded episode open loop in MuJoCo (tracking error, side-by-side video) or on the robot through the safety gate",
    examples=(
        "vla-replay dataset=data/teleop.zarr episode=3 target=sim",
        "vla-replay dataset=data/teleop.zarr episode=3 target=ros speed=0.5 --yes",
    ),
    flags={"--yes": "ros.confirm=false", "-y": "ros.confirm=false"},
    prefixes={"speed=": "ros.speed="},
)


def _out_dir(resolved: dict[str, Any]) -> Path:
    if resolved.get("out_dir"):
        return Path(resolved["out_dir"])
    name = Path(str(resolved["dataset"])).stem
    return Path("outputs/replay") / f"{name}_ep{resolved['episode']}_{resolved['target']}"


def _run_sim(ep: Any, resolved: dict[str, Any], out: Path) -> int:
    from vla.replay import SimReplayConfig, replay_in_sim

    s = resolved["sim"]
    cfg = SimReplayConfig(
        task=s.get("task"),
        seed=s.get("seed"),
        init=s.get("init", "auto"),
        env_overrides=dict(s.get("env_overrides") or {}),
        video_path=str(out / "side_by_side.mp4") if s.get("video", True) else None,
        video_camera=s.get("video_camera"),
        video_scale=int(s.get("video_scale", 2)),
    )
    result = replay_in_sim(ep, cfg)
    print(result.table())
    (out / "replay.json").write_text(json.dumps(result.to_dict(), indent=2))
    if result.video_path is not None:
        print(f"[vla-replay] side-by-side video (recorded | simulated): {result.video_path}")
    return 0


def _run_ros(ep: Any, resolved: dict[str, Any], out: Path) -> int:
    from sim.safety import safety_config_from_dict
    from vla.replay.confirm import ReplayRefused
    from vla.replay.ros_replay import RosReplayConfig, replay_on_robot

    r = dict(resolved["ros"])
    r["joint_names"] = tuple(r["joint_names"])
    cfg = RosReplayConfig(**r)
    safety = safety_config_from_dict(resolved["safety"], "configs/safety (safety=...)")
    try:
        result = replay_on_robot(ep, cfg, safety)
    except ReplayRefused as e:
        print(f"[vla-replay] {e}", file=sys.stderr)
        return 2
    (out / "replay.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    print(
        f"[vla-replay] {'completed' if result.completed else 'STOPPED'}: {result.steps_executed}/{result.n_steps} "
        f"steps at {result.speed:g}x in {result.wall_seconds:.1f} s; {result.stop_reason}"
    )
    return 0 if result.completed else 1


def run(cfg: DictConfig) -> int:
    """Run one replay from a composed config; returns the exit status."""
    from vla.data import DatasetError
    from vla.replay import load_episode

    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    if not resolved.get("dataset"):
        print("error: dataset=<store.zarr> is required", file=sys.stderr)
        return 2
    target = resolved.get("target")
    if target not in ("sim", "ros"):
        print(f"error: target must be 'sim' or 'ros', got {target!r}", file=sys.stderr)
        return 2
    try:
        ep = load_episode(resolved["dataset"], int(resolved["episode"]), load_images=target == "sim")
        ep = ep.window(int(resolved.get("start") or 0), resolved.get("stop"))
    except (DatasetError, IndexError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = _out_dir(resolved)
    out.mkdir(parents=True, exist_ok=True)
    (out / "replay.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    try:
        return _run_sim(ep, resolved, out) if target == "sim" else _run_ros(ep, resolved, out)
    except (ValueError, TimeoutError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    return run(cfg)


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()
