"""The policy process's copy of the simulated world, kept in step from the `world_state` topic.

`WorldStateListener` subscribes (its own node, spun in a background thread, because the
collaborator factory of the policy node gets no node handle). `WorldReplica` is a second
`sim.make(task, ...)` with the robot process's config: on a new episode it is reset with the same
seed (so the task's sampled attributes — target, pads, instruction — are the same), then its
physics state is overwritten with the ground truth. The scripted expert and the gate's full-state
world model read this replica; neither ever touches the robot process's simulator.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import mujoco
import numpy as np
from rclpy.context import Context
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import Float64MultiArray

import sim
from vla.deploy.sim_backend import STATE_SPEC
from vla.deploy.sim_node import BackgroundExecutor
from vla.deploy.world_topics import DEFAULT_TOPICS, WorldState, WorldTopics, msg_to_world_state


class WorldStateListener:
    """Keeps the latest `WorldState` from the robot process (thread-safe)."""

    def __init__(self, topics: WorldTopics = DEFAULT_TOPICS, context: Context | None = None) -> None:
        self._lock = threading.Lock()
        self._latest: WorldState | None = None
        self._received: float | None = None
        self._runner = BackgroundExecutor(context)
        node = Node("vla_world_listener", context=context)
        node.create_subscription(Float64MultiArray, topics.world_state, self._on_msg, QoSProfile(depth=5))
        self._runner.add(node)

    def _on_msg(self, msg: Float64MultiArray) -> None:
        ws = msg_to_world_state(msg)
        with self._lock:
            self._latest, self._received = ws, time.monotonic()

    def latest(self, max_age_s: float | None = None) -> WorldState:
        """The newest snapshot; raises (so the node holds and says why) if none, or older than `max_age_s`."""
        with self._lock:
            ws, received = self._latest, self._received
        if ws is None or received is None:
            raise RuntimeError("no world_state received yet from the simulated robot")
        if max_age_s is not None and time.monotonic() - received > max_age_s:
            raise RuntimeError(
                f"world_state is {time.monotonic() - received:.3f} s old (limit {max_age_s} s)"
            )
        return ws

    def close(self) -> None:
        self._runner.close()


class WorldReplica:
    """A local `TabletopEnv` synchronized to the robot process's world (no rendering)."""

    def __init__(self, task: str, env_overrides: dict[str, Any] | None = None) -> None:
        overrides = {k: v for k, v in (env_overrides or {}).items() if k not in ("image_size", "cameras")}
        self.env = sim.make(task, render_images=False, **overrides)
        self.episode: int | None = None
        self._nstate = mujoco.mj_stateSize(self.env.model, STATE_SPEC)

    def sync(self, ws: WorldState) -> bool:
        """Take the ground truth in; returns True when it starts a new episode (replica reset first)."""
        if ws.state.shape != (self._nstate,):
            raise ValueError(
                f"world_state has {ws.state.size} state numbers, the replica {self._nstate}: the robot "
                "process and the policy process must build the same task with the same env overrides"
            )
        new = ws.episode != self.episode
        if new:
            self.env.reset(seed=ws.seed)
            self.episode = ws.episode
        mujoco.mj_setState(self.env.model, self.env.data, ws.state, STATE_SPEC)
        mujoco.mj_forward(self.env.model, self.env.data)
        return new

    def full_state(self) -> np.ndarray:
        state = np.empty(self._nstate)
        mujoco.mj_getState(self.env.model, self.env.data, state, STATE_SPEC)
        return state

    def close(self) -> None:
        self.env.close()
