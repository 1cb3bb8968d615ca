"""A MuJoCo robot for the robot node in replay tests: the task scene, stepped by the node's clock."""

from __future__ import annotations

import threading

import mujoco
import numpy as np

import sim
from ros_bridge.config import UR5E_2F85_JOINTS
from sim.scene import ARM_ACTUATORS, GRIPPER_ACTUATOR, GRIPPER_CTRL_MAX
from vla.replay.sim_replay import set_robot_state


class SimArm:
    """`ros_bridge.interfaces.RobotBackend` over a task env reset with `seed` (no cameras).

    q0: (7,) start the arm there (joints + gripper command) instead of the reset pose.
    """

    def __init__(self, task: str, seed: int, q0: np.ndarray | None = None) -> None:
        self.env = sim.make(task, render_images=False)
        self.env.reset(seed=seed)
        if q0 is not None:
            set_robot_state(self.env, np.asarray(q0, np.float64))
        m = self.env.model
        self._arm = np.array([m.actuator(a).id for a in ARM_ACTUATORS])
        self._grip = m.actuator(GRIPPER_ACTUATOR).id
        self.joint_names = list(UR5E_2F85_JOINTS)
        self.camera_names: list[str] = []
        self.lock = threading.Lock()

    def read_joints(self) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            q = self.env.robot_state().astype(np.float64)
            qd = np.append(self.env.data.qvel[sim.scene.arm_dof_ids(self.env.model)], 0.0)
            return q, qd

    def render(self, camera: str) -> np.ndarray:
        raise ValueError(f"SimArm has no cameras (asked for {camera!r})")

    def command(self, q_target: np.ndarray) -> None:
        with self.lock:
            d = self.env.data
            d.ctrl[self._arm] = q_target[:6]
            d.ctrl[self._grip] = float(np.clip(q_target[6], 0.0, 1.0)) * GRIPPER_CTRL_MAX

    def step(self, dt: float) -> None:
        with self.lock:
            m = self.env.model
            mujoco.mj_step(m, self.env.data, nstep=max(1, round(dt / m.opt.timestep)))

    def is_success(self) -> bool:
        with self.lock:
            return bool(self.env.task.is_success())
