"""Synthetic episodes and metadata shared by the dataset tests."""

from __future__ import annotations

import numpy as np

from vla.data import DatasetMeta, KeySpec

JOINTS = [
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
    "gripper",
]


def make_meta(cameras: tuple[str, ...] = ("front", "wrist")) -> DatasetMeta:
    return DatasetMeta(
        fps=20.0,
        robot="ur5e_2f85",
        joint_names=list(JOINTS),
        camera_names=list(cameras),
        keys={
            "state": KeySpec(units="rad|[0,1]", description="6 arm joint positions + gripper opening"),
            "action": KeySpec(units="rad|[0,1]", description="joint position targets + gripper command"),
            "qvel": KeySpec(units="rad/s", description="arm joint velocities"),
        },
        extra={"simulator": "mujoco"},
    )


def make_episode(seed: int, T: int, hw: int = 8, cameras: tuple[str, ...] = ("front", "wrist")) -> dict:
    """Random but seed-determined episode: every value differs, so any mix-up of frames shows."""
    rng = np.random.default_rng(seed)
    ep = {
        "state": rng.normal(size=(T, 7)).astype(np.float32),
        "qvel": rng.normal(size=(T, 6)).astype(np.float32),
        "action": rng.normal(size=(T, 7)).astype(np.float32),
    }
    for cam in cameras:
        ep[f"image_{cam}"] = rng.integers(0, 256, size=(T, hw, hw, 3), dtype=np.uint8)
    return ep
