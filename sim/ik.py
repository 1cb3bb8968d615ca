"""Damped-least-squares inverse kinematics for the arm's pinch site (MuJoCo Jacobians).

Solves on a scratch :class:`mujoco.MjData` so the simulation state is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sim.scene import ARM_JOINTS, HOME_QPOS, PINCH_SITE, arm_dof_ids, arm_qpos_ids


@dataclass(frozen=True)
class IKConfig:
    """DLS IK settings.

    Attributes:
        damping: Levenberg-Marquardt damping lambda (larger = slower but safer near singularities).
        max_iters: iterations per solve.
        pos_tol / rot_tol: convergence tolerances [m] / [rad].
        max_step: largest joint change per iteration [rad].
        rot_weight: weight of the orientation error relative to position [m/rad].
        posture_gain: null-space pull toward :data:`HOME_QPOS` (keeps the elbow up, wrist level).
    """

    damping: float = 0.05
    max_iters: int = 30
    pos_tol: float = 5e-4
    rot_tol: float = 5e-3
    max_step: float = 0.2
    rot_weight: float = 0.3
    posture_gain: float = 0.05


def down_quat(yaw: float) -> np.ndarray:
    """World orientation (w, x, y, z) of the pinch frame pointing straight down, rotated by ``yaw`` about z.

    At ``yaw = 0`` the fingers close along world y.
    """
    # pinch z -> world -z; pinch x -> world (cos, sin) rotated.
    c, s = np.cos(yaw), np.sin(yaw)
    x = np.array([c, s, 0.0])
    z = np.array([0.0, 0.0, -1.0])
    y = np.cross(z, x)
    mat = np.stack([x, y, z], axis=1)
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, mat.reshape(-1))
    return q


class ArmIK:
    """Pinch-site pose IK for the 6 arm joints of a compiled scene model."""

    def __init__(self, model: mujoco.MjModel, cfg: IKConfig | None = None) -> None:
        self.model = model
        self.cfg = cfg or IKConfig()
        self.data = mujoco.MjData(model)
        self.site = model.site(PINCH_SITE).id
        self.qadr = arm_qpos_ids(model)
        self.dadr = arm_dof_ids(model)
        jids = [model.joint(j).id for j in ARM_JOINTS]
        self.lo = model.jnt_range[jids, 0].copy()
        self.hi = model.jnt_range[jids, 1].copy()
        self.home = np.asarray(HOME_QPOS)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def site_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Forward kinematics: pinch position (3,) and quaternion (4,) for arm joints ``q`` (6,)."""
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[self.site])
        return self.data.site_xpos[self.site].copy(), quat

    def solve(
        self, target_pos: np.ndarray, target_quat: np.ndarray, q_init: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """Joint positions (6,) reaching the target pose from ``q_init``; also the final position error [m]."""
        cfg = self.cfg
        q = np.clip(np.asarray(q_init, np.float64).copy(), self.lo, self.hi)
        err = np.zeros(6)
        qerr = np.zeros(4)
        cur_quat = np.zeros(4)
        neg = np.zeros(4)
        pos_err = np.inf
        for _ in range(cfg.max_iters):
            self.data.qpos[self.qadr] = q
            mujoco.mj_kinematics(self.model, self.data)
            mujoco.mj_comPos(self.model, self.data)
            err[:3] = target_pos - self.data.site_xpos[self.site]
            mujoco.mju_mat2Quat(cur_quat, self.data.site_xmat[self.site])
            mujoco.mju_negQuat(neg, cur_quat)
            mujoco.mju_mulQuat(qerr, target_quat, neg)
            mujoco.mju_quat2Vel(err[3:], qerr, 1.0)
            pos_err = float(np.linalg.norm(err[:3]))
            if pos_err < cfg.pos_tol and np.linalg.norm(err[3:]) < cfg.rot_tol:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.dadr], cfg.rot_weight * self._jacr[:, self.dadr]])
            e = np.concatenate([err[:3], cfg.rot_weight * err[3:]])
            jjt = jac @ jac.T + cfg.damping**2 * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, e)
            # Null-space posture term: (I - J^+ J) pulls toward home without disturbing the task.
            pinv = jac.T @ np.linalg.inv(jjt)
            dq += (np.eye(6) - pinv @ jac) @ (cfg.posture_gain * (self.home - q))
            scale = np.max(np.abs(dq)) / cfg.max_step
            if scale > 1.0:
                dq /= scale
            q = np.clip(q + dq, self.lo, self.hi)
        return q, pos_err
