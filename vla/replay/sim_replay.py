"""Open-loop replay of a recorded episode's actions in the simulator.

The initial state comes from the recording: episodes collected in simulation store ``task`` and
``seed`` in their ``info``, and ``env.reset(seed=seed)`` rebuilds exactly the scene they started from
(MuJoCo is deterministic on one machine). Other episodes (teleoperation, imports) start from the
task's scene with the arm moved to the recorded first joint state (``init="state"``): objects are not
in the dataset, so they come from ``seed``.

Reported: tracking error per joint (simulated vs recorded joint state at each frame: RMS and max),
the servo's command error (state at t+1 vs the action applied at t), whether the task succeeded,
and optionally a side-by-side video of the recorded camera frame and the simulated one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vla.replay.episode import RecordedEpisode
from vla.replay.video import side_by_side, write_video

InitMode = Literal["auto", "seed", "state"]


@dataclass(frozen=True)
class SimReplayConfig:
    """How to replay in simulation.

    Attributes:
        task: registered ``sim`` task; None -> the episode's ``info["task"]`` (or the store's ``extra.task``).
        seed: reset seed; None -> ``info["seed"]`` (required with ``init="seed"``).
        init: ``"seed"`` rebuild the recorded scene from the seed; ``"state"`` also set the arm to the
            recorded first joint state; ``"auto"``: ``"seed"`` when the episode's info has a seed, else ``"state"``.
        env_overrides: task config fields on top of what the recording implies (image size, cameras,
            control rate, the collect config's overrides).
        video_path: write the side-by-side mp4 here (None: no video).
        video_camera: camera shown in the video (None: the first recorded camera).
        video_scale: integer upscaling of the video frames.
    """

    task: str | None = None
    seed: int | None = None
    init: InitMode = "auto"
    env_overrides: dict[str, Any] = field(default_factory=dict)
    video_path: str | None = None
    video_camera: str | None = None
    video_scale: int = 2

    def __post_init__(self) -> None:
        if self.init not in ("auto", "seed", "state"):
            raise ValueError(f"SimReplayConfig.init must be 'auto', 'seed' or 'state', got {self.init!r}")
        if self.video_scale < 1:
            raise ValueError(f"SimReplayConfig.video_scale must be >= 1, got {self.video_scale}")


@dataclass
class SimReplayResult:
    """What a sim replay measured. Per-joint arrays are (7,) in ``joint_names`` order (last: gripper)."""

    task: str
    seed: int
    init: str
    n_steps: int
    success: bool
    success_step: int | None
    recorded_success: bool | None
    joint_names: list[str]
    state_error_rms: np.ndarray | None
    state_error_max: np.ndarray | None
    initial_state_error: np.ndarray | None
    command_error_rms: np.ndarray
    sim_states: np.ndarray
    video_path: Path | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no per-frame arrays)."""

        def lst(x: np.ndarray | None) -> list[float] | None:
            return None if x is None else [float(v) for v in x]

        return {
            "task": self.task,
            "seed": self.seed,
            "init": self.init,
            "n_steps": self.n_steps,
            "success": self.success,
            "success_step": self.success_step,
            "recorded_success": self.recorded_success,
            "joint_names": self.joint_names,
            "state_error_rms": lst(self.state_error_rms),
            "state_error_max": lst(self.state_error_max),
            "initial_state_error": lst(self.initial_state_error),
            "command_error_rms": lst(self.command_error_rms),
            "video_path": None if self.video_path is None else str(self.video_path),
            "seconds": self.seconds,
        }

    def table(self) -> str:
        """Per-joint tracking error as a text table (rad; the gripper row is in [0, 1] units)."""
        lines = [
            "tracking error |simulated - recorded joint state| per frame; cmd: |state(t+1) - action(t)|",
            f"{'joint':<24} {'rms err':>9} {'max err':>9} {'cmd rms':>9}",
        ]
        for j, name in enumerate(self.joint_names):
            rms = "-" if self.state_error_rms is None else f"{self.state_error_rms[j]:.5f}"
            mx = "-" if self.state_error_max is None else f"{self.state_error_max[j]:.5f}"
            lines.append(f"{name:<24} {rms:>9} {mx:>9} {self.command_error_rms[j]:>9.5f}")
        rec = "unknown" if self.recorded_success is None else str(self.recorded_success)
        at = f" at step {self.success_step}" if self.success else ""
        lines.append(
            f"task {self.task} seed {self.seed} ({self.init}): success {self.success}{at} (recorded: {rec})"
        )
        return "\n".join(lines)


def _task_of(ep: RecordedEpisode, cfg: SimReplayConfig) -> str:
    task = cfg.task or ep.info.get("task") or ep.dataset_extra.get("task")
    if not task:
        raise ValueError(
            f"{ep.path}: episode {ep.index}: no task in meta/zarr.json episodes[{ep.index}].info.task or the "
            "store's extra.task; pass the task (SimReplayConfig.task / task=<name>)"
        )
    return str(task)


def _recorded_env_overrides(ep: RecordedEpisode) -> dict[str, Any]:
    """Task config fields that make the simulated episode look like the recorded one."""
    out: dict[str, Any] = {}
    collect_cfg = ep.dataset_extra.get("collect_config")
    if isinstance(collect_cfg, dict):
        # Stores written by `vla-collect` keep the env overrides they were collected with.
        task_cfg = collect_cfg.get("task") or {}
        out.update(task_cfg.get("env") or {})
        out.update(collect_cfg.get("env_overrides") or {})
    sizes = {im.shape[1:3] for im in ep.images.values()}
    if len(sizes) == 1:
        (h, w) = next(iter(sizes))
        if h == w:
            out["image_size"] = int(h)
    import sim

    sim_cams = set(sim.task_config("pick_cube").cameras)  # the world's camera names
    cams = tuple(c for c in ep.images if c in sim_cams)
    if cams:
        out["cameras"] = cams
    out["control_rate_hz"] = float(ep.fps)
    return out


def set_robot_state(env: Any, state: np.ndarray) -> None:
    """Move the arm (and its position servos) to ``state[:6]`` and command the gripper to ``state[6]``."""
    import mujoco

    from sim.scene import ARM_ACTUATORS, GRIPPER_ACTUATOR, GRIPPER_CTRL_MAX, arm_dof_ids, arm_qpos_ids

    base = env.unwrapped
    m, d = base.model, base.data
    d.qpos[arm_qpos_ids(m)] = state[:6]
    d.qvel[arm_dof_ids(m)] = 0.0
    d.ctrl[[m.actuator(a).id for a in ARM_ACTUATORS]] = state[:6]
    d.ctrl[m.actuator(GRIPPER_ACTUATOR).id] = float(np.clip(state[6], 0.0, 1.0)) * GRIPPER_CTRL_MAX
    mujoco.mj_forward(m, d)


def replay_in_sim(ep: RecordedEpisode, cfg: SimReplayConfig | None = None) -> SimReplayResult:
    """Apply ``ep.action`` open loop in the simulator from the recorded initial state; see module docstring."""
    import sim

    cfg = cfg or SimReplayConfig()
    t0 = time.perf_counter()
    task = _task_of(ep, cfg)
    seed = cfg.seed if cfg.seed is not None else ep.info.get("seed")
    # auto: the recorded scene is rebuilt only from the episode's own seed; otherwise the objects come
    # from `seed` (or 0) and the arm from the recorded joints.
    init = cfg.init if cfg.init != "auto" else ("seed" if ep.info.get("seed") is not None else "state")
    if init == "seed" and seed is None:
        raise ValueError(
            f"{ep.path}: episode {ep.index}: init='seed' but meta/zarr.json episodes[{ep.index}].info has no "
            "'seed'; pass a seed or use init='state'"
        )
    if init == "state" and ep.state is None:
        raise ValueError(f"{ep.path}/data/state: missing; init='state' needs the recorded joint states")
    seed = int(seed or 0)
    T = ep.n_steps
    overrides = {
        **_recorded_env_overrides(ep),
        # Replay every recorded action: no early termination, no truncation before the end.
        "terminate_on_success": False,
        "max_steps": T + 1,
        **cfg.env_overrides,
    }
    cam = cfg.video_camera or (next(iter(ep.images)) if ep.images else None)
    if cfg.video_path is not None:
        if cam is None or cam not in ep.images:
            raise ValueError(
                f"{ep.path}/data/image_{cam}: no recorded frames of camera {cam!r} for the side-by-side video; "
                f"recorded cameras: {sorted(ep.images)}"
            )
        if cam not in overrides.get("cameras", ()):
            overrides["cameras"] = (*overrides.get("cameras", ()), cam)
    env = sim.make(task, **overrides)
    frames: list[np.ndarray] = []
    try:
        obs, _ = env.reset(seed=seed)
        if init == "state":
            assert ep.state is not None
            set_robot_state(env, ep.state[0])
            # The observation after moving the arm (public env helpers, same as its own _obs).
            obs = {**obs, "state": env.robot_state()}
            for c in env.cfg.cameras if env.cfg.render_images else ():
                obs[f"image_{c}"] = env.render_camera(c)
        states = np.empty((T + 1, 7), np.float32)
        success, success_step = False, None
        for t in range(T):
            states[t] = obs["state"]
            if cfg.video_path is not None:
                frames.append(side_by_side(ep.images[cam][t], obs[f"image_{cam}"], cfg.video_scale))
            obs, _, _, _, info = env.step(ep.action[t])
            if info["is_success"] and not success:
                success, success_step = True, t + 1
        states[T] = obs["state"]
    finally:
        env.close()

    err = None if ep.state is None else np.abs(states[:T] - ep.state)
    # The servo's tracking of the commands: where the arm got to one period after each action.
    cmd_err = np.sqrt(np.mean((states[1:] - ep.action) ** 2, axis=0))
    video = write_video(cfg.video_path, frames, ep.fps) if cfg.video_path is not None else None
    names = ep.joint_names if len(ep.joint_names) == 7 else [f"joint_{i}" for i in range(7)]
    rec_success = ep.info.get("success")
    return SimReplayResult(
        task=task,
        seed=seed,
        init=init,
        n_steps=T,
        success=success,
        success_step=success_step,
        recorded_success=None if rec_success is None else bool(rec_success),
        joint_names=list(names),
        state_error_rms=None if err is None else np.sqrt(np.mean(err**2, axis=0)),
        state_error_max=None if err is None else err.max(axis=0),
        initial_state_error=None if err is None else err[0],
        command_error_rms=cmd_err,
        sim_states=states,
        video_path=video,
        seconds=time.perf_counter() - t0,
    )
