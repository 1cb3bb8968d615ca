"""The MuJoCo task environment as a `ros_bridge.interfaces.RobotBackend`, with episode management.

The robot node (`ros_bridge.robot_node.RobotNode`) drives it: each command tick it calls
`command(q_target)` then `step(dt)`; joint states and camera frames are read at their own rates.
The actuator mapping is the environment's own (`TabletopEnv.step`): the 7-vector is clipped to the
action space, the 6 arm targets go to the position servos, the gripper command in [0, 1] is scaled
to the 2F-85's 0..255 input. `step(dt)` runs `dt / timestep` physics steps, so a 100 Hz command rate
advances 5 steps of 2 ms per tick (the env holds one action for 25 steps at 20 Hz).

Episodes: `request_reset(seed)` (from any thread) is carried out at the next `step` in the robot
node's thread: the env is reset with that seed (layout, colours, instruction as `vla-eval` would
get for the same seed) and the world is *paused* until the controller's command has been brought
to the new joint positions (the companion node publishes a time-0 trajectory to the reset pose,
see `vla.deploy.sim_node`), so the stale command of the previous episode never moves the arm;
then the arm holds the reset pose, and the episode's steps count from the policy's first command
away from it (vla-eval's clock also starts after the first chunk is computed).
Success is judged from simulator state after every physics tick (`task.is_success()`), like
`TabletopEnv.step`, and latched for the episode. The task's diagnostics see the command of every
tick of the episode before it runs (`Task.on_gripper_command`, numbered by the control period it
falls in, 1-based, as vla-eval numbers its actions) and are part of the status
(`EpisodeStatus.diagnostics`, `Task.diagnostics()`), so vla-deploy records what vla-eval records.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

import sim
from ros_bridge.config import UR5E_2F85_JOINTS
from sim.scene import (
    ARM_ACTUATORS,
    GRIPPER_ACTUATOR,
    GRIPPER_CTRL_MAX,
    GRIPPER_DRIVER_JOINT,
    GRIPPER_DRIVER_RANGE,
)
from sim.tasks.base import GRIPPER_CLOSED

STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS
# The command counts as "at the reset pose" within this distance per joint [rad] (resynchronisation).
_RESYNC_TOL = 1e-4


@dataclass
class SimBackendConfig:
    """Which simulated world the robot node exposes.

    task: registered `sim` task name.
    image_size: side of the rendered camera frames [px] (16..224).
    cameras: cameras the backend renders (a subset of ("front", "wrist")).
    env_overrides: further task-config fields (`sim.task_config`), e.g. {"n_distractors": 1}.
        The policy process builds its replica (expert, gate world model) with the same ones.
    seed: seed of the first episode (the robot starts in it before any reset is requested).
    """

    task: str = "pick_cube"
    image_size: int = 64
    cameras: tuple[str, ...] = ("front", "wrist")
    env_overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        self.cameras = tuple(self.cameras)
        bad = sorted({"image_size", "cameras", "render_images"} & set(self.env_overrides))
        if bad:
            raise ValueError(
                f"SimBackendConfig.env_overrides must not set {bad}: use the fields of the same name"
            )
        if self.task not in sim.task_names():
            raise ValueError(
                f"SimBackendConfig.task: unknown task {self.task!r}; registered: {sim.task_names()}"
            )


@dataclass
class EpisodeStatus:
    """Where the current episode stands (JSON-ready through `as_dict`).

    steps: control periods elapsed in the episode (simulated time x control rate).
    done: success with `terminate_on_success`, or `max_steps` reached (the env's own rule).
    paused: the world waits for the controller to reach the reset pose (no physics yet).
    started: the policy has commanded a move away from the reset pose: `steps` counts from then
        on, like vla-eval's (whose first chunk is computed before step 0). `sim_time` counts from
        the reset.
    request: id of the last reset request carried out (-1: none).
    diagnostics: the task's diagnostics of the episode so far (`Task.diagnostics()`, JSON-ready).
    """

    episode: int
    seed: int
    instruction: str
    success: bool
    progress: float
    steps: int
    max_steps: int
    sim_time: float
    done: bool
    paused: bool
    started: bool
    request: int
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class SimRobotBackend:
    """A `RobotBackend` over `sim.make(cfg.task, ...)`; thread-safe (one lock around the world).

    joint_names: the 7 UR5e + 2F-85 joints (positions: 6 arm [rad] + gripper closure in [0, 1]).
    camera_names: `cfg.cameras`; `render` returns (image_size, image_size, 3) uint8.
    """

    def __init__(self, cfg: SimBackendConfig) -> None:
        self.cfg = cfg
        self.env = sim.make(
            cfg.task, image_size=cfg.image_size, cameras=cfg.cameras, render_images=False, **cfg.env_overrides
        )
        self.joint_names = list(UR5E_2F85_JOINTS)
        self.camera_names = list(cfg.cameras)
        m = self.env.model
        self._arm_act = np.array([m.actuator(a).id for a in ARM_ACTUATORS])
        self._grip_act = m.actuator(GRIPPER_ACTUATOR).id
        self._grip_dof = int(m.jnt_dofadr[m.joint(GRIPPER_DRIVER_JOINT).id])
        self._arm_dof = self.env.arm_dof_ids  # the env's own arm dof ids (qvel layout)
        self._low = self.env.action_space.low.astype(np.float64)
        self._high = self.env.action_space.high.astype(np.float64)
        self._timestep = float(m.opt.timestep)
        self._period = 1.0 / self.env.cfg.control_rate_hz
        self.lock = threading.RLock()
        self._gl = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sim-render")
        self._episode = -1
        self._pending_seed: int | None = None
        self._request = -1
        self._step_hooks: list[Callable[[SimRobotBackend], None]] = []
        self._reset_hooks: list[Callable[[SimRobotBackend, np.ndarray], None]] = []
        # Objects that live as long as the backend (the companion node's executor): closed with it.
        self.companions: list[Any] = []
        self._closed = False
        self._reset_now(cfg.seed)

    # ------------------------------------------------------------------ RobotBackend protocol

    def read_joints(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions (7,) = `TabletopEnv.robot_state()`; velocities (7,): 6 arm [rad/s] + gripper closure rate [1/s]."""
        with self.lock:
            q = self.env.robot_state().astype(np.float64)
            d = self.env.data
            qd = np.append(d.qvel[self._arm_dof], d.qvel[self._grip_dof] / GRIPPER_DRIVER_RANGE)
            return q, qd

    def render(self, camera: str) -> np.ndarray:
        if camera not in self.camera_names:
            raise ValueError(f"SimRobotBackend: unknown camera {camera!r}; rendering {self.camera_names}")
        with self.lock:
            # An EGL context is current in one thread only, and a multi-threaded executor calls
            # from any of its workers: every GL call runs on the backend's own render thread.
            return self._gl.submit(self.env.render_camera, camera).result()

    def command(self, q_target: np.ndarray) -> None:
        """Position targets (7,) -> actuator controls, exactly as `TabletopEnv.step` maps an action."""
        a = np.asarray(q_target, dtype=np.float64).reshape(-1)
        if a.shape != (7,) or not np.all(np.isfinite(a)):
            raise ValueError(f"SimRobotBackend.command: need 7 finite targets, got {q_target!r}")
        with self.lock:
            self._last_command = a.copy()
            if self._paused:
                return  # the world waits; the reset pose's controls stay in place
            a = np.clip(a, self._low, self._high)
            d = self.env.data
            d.ctrl[self._arm_act] = a[:6]
            d.ctrl[self._grip_act] = a[6] * GRIPPER_CTRL_MAX

    def step(self, dt: float) -> None:
        n = round(dt / self._timestep)
        if n < 1 or abs(n * self._timestep - dt) > 1e-9:
            raise ValueError(
                f"SimRobotBackend.step: dt={dt} s is not a whole number of {self._timestep} s physics steps "
                "(choose command_rate_hz so that 1 / (rate * timestep) is an integer)"
            )
        reset_q: np.ndarray | None = None
        with self.lock:
            if self._pending_seed is not None:
                seed, self._pending_seed = self._pending_seed, None
                reset_q = self._reset_now(seed)
            elif self._paused:
                # Resume once the controller commands the reset pose (a stale target never acts).
                if np.max(np.abs(self._last_command - self._reset_q)) < _RESYNC_TOL:
                    self._paused = False
            elif not self._started and np.max(np.abs(self._last_command - self._reset_q)) >= _RESYNC_TOL:
                # Episode steps count from the policy's first command away from the reset pose, as
                # vla-eval's do (its first chunk is computed before step 0): the instruction's round
                # trip and the first inference are not episode time (the arm holds the reset pose).
                self._started = True
                self._start_time = self._time
            if not self._paused:
                if self._started:
                    self._gripper_command_to_task()
                mujoco.mj_step(self.env.model, self.env.data, nstep=n)
                self._time += n * self._timestep
                if not self._success and self.env.task.is_success():
                    self._success = True
                    self._success_time = self._time
            hooks = list(self._step_hooks)
        if reset_q is not None:
            for hook in list(self._reset_hooks):
                hook(self, reset_q)
        for hook in hooks:
            hook(self)

    def _gripper_command_to_task(self) -> None:
        """Hand the command about to run to the task's diagnostics, as vla-eval's evaluator does
        with each action: numbered by its control period (1-based), only within the episode."""
        step = int(np.floor((self._time - self._start_time) / self._period + 1e-6)) + 1
        cfg = self.env.cfg
        if step > cfg.max_steps or (self._success and cfg.terminate_on_success):
            return  # the episode is over (vla-eval runs no more actions)
        self.env.task.on_gripper_command(step, float(self._last_command[6]) > GRIPPER_CLOSED)

    # --------------------------------------------------------------------------- episodes

    def request_reset(self, seed: int, request: int | None = None) -> bool:
        """Reset to a new episode with `seed` at the next `step` (call from any thread).

        request: an increasing id; a repeated id (the requester re-sends until it sees the new
        episode) is ignored, so a reset is carried out once. Returns whether it was accepted.
        """
        with self.lock:
            if request is not None:
                if request <= self._request:
                    return False
                self._request = request
            self._pending_seed = int(seed)
            return True

    def _reset_now(self, seed: int) -> np.ndarray:
        self.env.reset(seed=seed)
        self._episode += 1
        self._seed = seed
        self._time = 0.0
        self._success = False
        self._success_time: float | None = None
        self._reset_q = self.env.robot_state().astype(np.float64)
        self._reset_q[6] = 0.0  # the gripper command of the reset (open)
        self._last_command = self._reset_q.copy()
        self._paused = self._episode > 0  # the first episode starts with the node's own command
        self._started = False
        self._start_time = 0.0
        return self._reset_q.copy()

    @property
    def paused(self) -> bool:
        """The world waits for the controller to reach the reset pose (no physics yet)."""
        with self.lock:
            return self._paused

    def add_step_hook(self, hook: Callable[[SimRobotBackend], None]) -> None:
        """Call `hook(backend)` after every `step` (in the robot node's thread, outside the lock)."""
        self._step_hooks.append(hook)

    def add_reset_hook(self, hook: Callable[[SimRobotBackend, np.ndarray], None]) -> None:
        """Call `hook(backend, q_reset (7,))` right after a reset (the controller must jump there)."""
        self._reset_hooks.append(hook)

    def status(self) -> EpisodeStatus:
        with self.lock:
            end = self._success_time if self._success else self._time
            steps = round((end - self._start_time) / self._period) if self._started else 0
            max_steps = self.env.cfg.max_steps
            # A policy that never moves (a gate that holds from the start) ends at max_steps too.
            elapsed = steps if self._started else round(self._time / self._period)
            done = (self._success and self.env.cfg.terminate_on_success) or elapsed >= max_steps
            return EpisodeStatus(
                episode=self._episode,
                seed=self._seed,
                instruction=self.env.task.instruction,
                success=self._success,
                progress=float(self.env.task.progress()),
                steps=steps,
                max_steps=max_steps,
                sim_time=self._time,
                done=bool(done),
                paused=self._paused,
                started=self._started,
                request=self._request,
                diagnostics=self.env.task.diagnostics(),
            )

    def world_state(self) -> tuple[int, int, float, np.ndarray]:
        """(episode, seed, episode sim time [s], mjSTATE_FULLPHYSICS vector) of the world now."""
        with self.lock:
            m, d = self.env.model, self.env.data
            state = np.empty(mujoco.mj_stateSize(m, STATE_SPEC))
            mujoco.mj_getState(m, d, state, STATE_SPEC)
            return self._episode, self._seed, self._time, state

    def close(self) -> None:
        for companion in self.companions:
            companion.close()
        self.companions = []
        with self.lock:
            if self._closed:
                return
            self._closed = True
            self._gl.submit(self.env.close).result()
            self._gl.shutdown()
