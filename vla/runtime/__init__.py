"""Real-time runtime: one control loop for simulator evaluation and the ROS node.

    from vla.runtime import ControlLoop, RuntimeConfig, SimulatedClock, run_episode
    loop = ControlLoop(policy, RuntimeConfig(mode="async", smoothing="rtc"),
                       clock=SimulatedClock(period_s=0.05, latency_s=0.12))
    result = run_episode(env, loop, max_steps=200, seed=0)
    result.stats.summary()   # deadline misses, latency p50/p99, gate holds, jerk at chunk boundaries

`policy` is any `ChunkPolicy`: obs history -> (H, Da) absolute actions, optionally conditioned
on a committed prefix (real-time chunking).
"""

from vla.runtime.action_queue import ActionQueue, QueuedChunk
from vla.runtime.clock import Clock, SimulatedClock, WallClock, delay_steps
from vla.runtime.config import MODES, SMOOTHINGS, RuntimeConfig
from vla.runtime.control_loop import ControlLoop, StepResult
from vla.runtime.episode import EpisodeResult, run_episode
from vla.runtime.expert_policy import ExpertChunkPolicy
from vla.runtime.obs_buffer import ObservationBuffer
from vla.runtime.protocol import ChunkGate, ChunkPolicy, GateResult
from vla.runtime.stats import ChunkRecord, LatencyTracker, RuntimeStats, StepRecord

__all__ = [
    "MODES",
    "SMOOTHINGS",
    "ActionQueue",
    "ChunkGate",
    "ChunkPolicy",
    "ChunkRecord",
    "Clock",
    "ControlLoop",
    "EpisodeResult",
    "ExpertChunkPolicy",
    "GateResult",
    "LatencyTracker",
    "ObservationBuffer",
    "QueuedChunk",
    "RuntimeConfig",
    "RuntimeStats",
    "SimulatedClock",
    "StepRecord",
    "StepResult",
    "WallClock",
    "delay_steps",
    "run_episode",
]
