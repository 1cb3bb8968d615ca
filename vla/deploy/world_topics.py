"""The simulation-only topics between the simulated robot process, the policy process and `vla-deploy`.

A real robot has none of these; they exist because in simulation the world's ground truth is
available, as a motion-capture system would provide it:

- `world_state` (`std_msgs/Float64MultiArray`): `[episode, seed, sim_time, *mjSTATE_FULLPHYSICS]`,
  published by the robot process at `world_state_rate_hz` of simulated time. The scripted expert
  (a privileged "teacher" policy) and the gate's full-state world model read it.
- `episode` (`std_msgs/String`, JSON of `vla.deploy.sim_backend.EpisodeStatus`): progress and
  success judged from the simulator state, published at the same rate and after every reset.
- `reset` (`std_msgs/String`, JSON `{"seed": int, "request": int}`): `vla-deploy` asks for a new
  episode; it re-sends until the episode status shows the request id (ids are carried out once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from std_msgs.msg import Float64MultiArray, String

_HEADER = 3  # episode, seed, sim_time


@dataclass(frozen=True)
class WorldTopics:
    """Topic names of the simulation-only channel (all three processes must agree)."""

    world_state: str = "/sim/world_state"
    episode: str = "/sim/episode"
    reset: str = "/sim/reset"


DEFAULT_TOPICS = WorldTopics()


@dataclass(frozen=True)
class WorldState:
    """One ground-truth snapshot: `state` is the (nstate,) mjSTATE_FULLPHYSICS vector."""

    episode: int
    seed: int
    sim_time: float
    state: np.ndarray


def world_state_to_msg(episode: int, seed: int, sim_time: float, state: np.ndarray) -> Float64MultiArray:
    msg = Float64MultiArray()
    msg.data = np.concatenate(
        [[float(episode), float(seed), float(sim_time)], np.asarray(state, np.float64)]
    ).tolist()
    return msg


def msg_to_world_state(msg: Float64MultiArray) -> WorldState:
    data = np.asarray(msg.data, dtype=np.float64)
    if data.size <= _HEADER:
        raise ValueError(f"world_state message has {data.size} numbers; expected {_HEADER} header + state")
    return WorldState(int(data[0]), int(data[1]), float(data[2]), data[_HEADER:].copy())


def json_msg(payload: dict[str, Any]) -> String:
    return String(data=json.dumps(payload))


def parse_json_msg(msg: String, what: str) -> dict[str, Any]:
    try:
        value = json.loads(msg.data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value
