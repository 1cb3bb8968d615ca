"""The gymnasium environment: one task in the UR5e + 2F-85 tabletop world.

Observation (dict):
    image_<cam>: uint8 (H, W, 3) for each camera in ``cfg.cameras`` (absent when ``render_images=False``)
    state: float32 (7,) 6 arm joint positions [rad] + gripper closure in [0 open, 1 closed]
    qvel: float32 (6,) arm joint velocities [rad/s]
    instruction: str
Action: float32 (7,) 6 absolute arm joint targets [rad] + gripper command in [0 open, 1 closed],
held for one control period (``1 / control_rate_hz`` s, ``cfg.n_substeps`` physics steps).
Reward: 1.0 on success steps, else 0.0. ``info["is_success"]``: bool.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import mujoco
import numpy as np

from sim import gl
from sim.scene import (
    ARM_ACTUATORS,
    GRIPPER_ACTUATOR,
    GRIPPER_CTRL_MAX,
    GRIPPER_DRIVER_JOINT,
    GRIPPER_DRIVER_RANGE,
    HOME_QPOS,
    arm_dof_ids,
    arm_qpos_ids,
    build_scene,
)
from sim.tasks.base import INSTRUCTION_CHARSET, Task

SETTLE_STEPS = 25  # physics steps after reset so objects rest on the table


class TabletopEnv(gym.Env):
    """A language-conditioned tabletop task (see module docstring for spaces)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: Task, render_mode: str | None = "rgb_array") -> None:
        super().__init__()
        self.task = task
        self.cfg = cfg = task.cfg
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": round(cfg.control_rate_hz)}
        spec = build_scene(cfg.scene_config())
        task.build(spec)
        self.spec_ = spec
        self.model = spec.compile()
        self.data = mujoco.MjData(self.model)
        task.bind(self.model, self.data)
        m = self.model
        self._qadr = arm_qpos_ids(m)
        self._dadr = arm_dof_ids(m)
        self._arm_act = np.array([m.actuator(a).id for a in ARM_ACTUATORS])
        self._grip_act = m.actuator(GRIPPER_ACTUATOR).id
        self._grip_qadr = m.jnt_qposadr[m.joint(GRIPPER_DRIVER_JOINT).id]
        lo = m.actuator_ctrlrange[self._arm_act, 0]
        hi = m.actuator_ctrlrange[self._arm_act, 1]
        self._act_lo = np.append(lo, 0.0).astype(np.float32)
        self._act_hi = np.append(hi, 1.0).astype(np.float32)
        self.action_space = gym.spaces.Box(self._act_lo, self._act_hi, dtype=np.float32)
        obs_spaces: dict[str, gym.spaces.Space] = {}
        if cfg.render_images:
            for cam in cfg.cameras:
                obs_spaces[f"image_{cam}"] = gym.spaces.Box(
                    0, 255, (cfg.image_size, cfg.image_size, 3), dtype=np.uint8
                )
        obs_spaces["state"] = gym.spaces.Box(-np.inf, np.inf, (7,), dtype=np.float32)
        obs_spaces["qvel"] = gym.spaces.Box(-np.inf, np.inf, (6,), dtype=np.float32)
        obs_spaces["instruction"] = gym.spaces.Text(max_length=200, min_length=1, charset=INSTRUCTION_CHARSET)
        self.observation_space = gym.spaces.Dict(obs_spaces)
        self._renderer: mujoco.Renderer | None = None
        self._view_renderer: mujoco.Renderer | None = None
        self._scene_opt = mujoco.MjvOption()
        self._steps = 0

    # -- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        q0 = np.asarray(HOME_QPOS) + rng.uniform(-1, 1, 6) * self.cfg.robot_init_noise
        d.qpos[self._qadr] = q0
        d.ctrl[self._arm_act] = q0
        d.ctrl[self._grip_act] = 0.0
        self.task.randomize_appearance(rng)
        self.task.clear_diagnostics()
        self.task.reset(rng)
        mujoco.mj_forward(m, d)
        mujoco.mj_step(m, d, nstep=SETTLE_STEPS)
        self._steps = 0
        return self._obs(), {"is_success": bool(self.task.is_success()), "instruction": self.task.instruction}

    def step(self, action: np.ndarray):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (7,) or not np.all(np.isfinite(a)):
            raise ValueError(f"action must be 7 finite numbers (6 joint targets + gripper), got {action!r}")
        a = np.clip(a, self._act_lo, self._act_hi)
        d = self.data
        d.ctrl[self._arm_act] = a[:6]
        d.ctrl[self._grip_act] = a[6] * GRIPPER_CTRL_MAX
        mujoco.mj_step(self.model, d, nstep=self.cfg.n_substeps)
        self._steps += 1
        success = bool(self.task.is_success())
        terminated = success and self.cfg.terminate_on_success
        truncated = self._steps >= self.cfg.max_steps and not terminated
        info = {"is_success": success, "progress": float(self.task.progress()), "step": self._steps}
        return self._obs(), float(success), terminated, truncated, info

    def render(self) -> np.ndarray:
        """A larger front-camera view, ``(render_size, render_size, 3)`` uint8."""
        size = self.cfg.render_size
        if self._view_renderer is None:
            self._view_renderer = self._make_renderer(size)
        self._view_renderer.update_scene(self.data, camera="front", scene_option=self._scene_opt)
        return self._view_renderer.render()

    def close(self) -> None:
        for r in (self._renderer, self._view_renderer):
            if r is not None:
                r.close()
        self._renderer = self._view_renderer = None

    # -- helpers -----------------------------------------------------------------------------
    @property
    def instruction(self) -> str:
        return self.task.instruction

    @property
    def arm_dof_ids(self) -> np.ndarray:
        """(6,) int: the arm joints' dof addresses in `data.qvel` (the layout of `obs["qvel"]`)."""
        return self._dadr

    @property
    def arm_qpos_ids(self) -> np.ndarray:
        """(6,) int: the arm joints' addresses in `data.qpos`."""
        return self._qadr

    def robot_state(self) -> np.ndarray:
        """(7,) float32: 6 arm joint positions + gripper closure in [0, 1]."""
        q = self.data.qpos[self._qadr]
        g = np.clip(self.data.qpos[self._grip_qadr] / GRIPPER_DRIVER_RANGE, 0.0, 1.0)
        return np.append(q, g).astype(np.float32)

    def _make_renderer(self, size: int) -> mujoco.Renderer:
        try:
            r = mujoco.Renderer(self.model, height=size, width=size)
        except Exception as err:  # the GL backend's own exceptions vary (EGL, OSMesa, GLFW)
            raise RuntimeError(gl.render_error_hint(err)) from err
        # Policy views: no shadows, reflections, skybox or fog (each costs a pass on llvmpipe).
        for flag in (
            mujoco.mjtRndFlag.mjRND_SHADOW,
            mujoco.mjtRndFlag.mjRND_REFLECTION,
            mujoco.mjtRndFlag.mjRND_SKYBOX,
        ):
            r.scene.flags[flag] = False
        return r

    def render_camera(self, camera: str) -> np.ndarray:
        """One policy camera frame ``(image_size, image_size, 3)`` uint8."""
        if self._renderer is None:
            self._renderer = self._make_renderer(self.cfg.image_size)
        self._renderer.update_scene(self.data, camera=camera, scene_option=self._scene_opt)
        return self._renderer.render()

    def _obs(self) -> dict[str, Any]:
        obs: dict[str, Any] = {}
        if self.cfg.render_images:
            for cam in self.cfg.cameras:
                obs[f"image_{cam}"] = self.render_camera(cam)
        obs["state"] = self.robot_state()
        obs["qvel"] = self.data.qvel[self._dadr].astype(np.float32)
        obs["instruction"] = self.task.instruction
        return obs
