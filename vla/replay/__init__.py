"""Replay a recorded episode: open-loop in the simulator, or on a robot through the ROS policy node.

    from vla.replay import load_episode, SimReplayConfig, replay_in_sim
    ep = load_episode("demos.zarr", 0)
    result = replay_in_sim(ep, SimReplayConfig(video_path="replay.mp4"))
    print(result.success, result.state_error_rms)      # per joint [rad]

Modules: ``episode`` (one stored episode as arrays), ``sim_replay`` (MuJoCo replay, tracking error,
success), ``video`` (side-by-side recorded | simulated mp4), ``timing`` (the world-model gate re-timed
for a speed factor), ``ros_replay`` (the episode's actions through the policy node, gated, at the
recorded timing times a speed factor, after a confirmation), ``confirm`` (the confirmation step).
"""

from vla.replay.confirm import ReplayRefused, confirm_motion
from vla.replay.episode import RecordedEpisode, load_episode
from vla.replay.sim_replay import SimReplayConfig, SimReplayResult, replay_in_sim

__all__ = [
    "RecordedEpisode",
    "ReplayRefused",
    "SimReplayConfig",
    "SimReplayResult",
    "confirm_motion",
    "load_episode",
    "replay_in_sim",
]
