"""The deploy controller scores each episode's instruction once, on its first observation, and puts
the verdict in its summary: the policy node publishes that summary on its status topic (see
tests/ros_bridge/test_policy_node.py for the `controller` entry of the status message)."""

from __future__ import annotations

import logging

import numpy as np

from ros_bridge.interfaces import Observation
from vla.deploy.controller import LoopController
from vla.encoders.grounding import Grounding
from vla.runtime import RuntimeConfig

HOME = np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0, 0.0])


class HoldPolicy:
    n_obs_steps = 1

    def reset(self) -> None:
        pass

    def __call__(self, obs, prefix):
        return np.repeat(np.asarray(obs["state"][-1], np.float32)[None], 8, axis=0)


class ScriptedGrounding:
    """Scores by a lookup (the instruction's known score); records what it was shown."""

    camera = "front"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.calls: list[tuple[tuple[int, ...], str]] = []

    def __call__(self, frame: np.ndarray, instruction: str) -> Grounding:
        self.calls.append((frame.shape, instruction))
        return Grounding(instruction, self.camera, self.scores[instruction], 0.12)


def _obs(instruction: str, images: dict[str, np.ndarray]) -> Observation:
    return Observation(images, HOME.copy(), np.zeros(7), instruction, 0.0)


def test_each_episode_instruction_is_grounded_once_and_reported(caplog) -> None:
    grounding = ScriptedGrounding({"pick up the red cube": 0.25, "pick up the purple cube": -0.08})
    ctrl = LoopController(HoldPolicy(), RuntimeConfig(mode="sync", n_obs_steps=1), 0.05, grounding=grounding)
    frame = np.zeros((8, 8, 3), np.uint8)
    ctrl.reset()
    assert ctrl.summary()["instruction_grounding"] is None  # nothing scored before the first step
    for _ in range(3):
        ctrl.step(_obs("pick up the red cube", {"front": frame}))
    assert grounding.calls == [((8, 8, 3), "pick up the red cube")]  # once per episode
    assert ctrl.summary()["instruction_grounding"]["grounded"] is True
    ctrl.reset()
    with caplog.at_level(logging.WARNING, logger="vla.deploy"):
        ctrl.step(_obs("pick up the purple cube", {"front": frame}))
    g = ctrl.summary()["instruction_grounding"]
    assert g == {"instruction": "pick up the purple cube", "camera": "front", "score": -0.08,
                 "threshold": 0.12, "grounded": False}  # fmt: skip
    assert "'pick up the purple cube' is not grounded" in caplog.text
    ctrl.reset()
    ctrl.step(_obs("pick up the red cube", {}))  # no front frame: said so, not scored
    g = ctrl.summary()["instruction_grounding"]
    assert g["grounded"] is None and "no 'front' image" in g["reason"] and len(grounding.calls) == 2
    ctrl.close()
