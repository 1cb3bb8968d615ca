"""Typed settings of the control loop (no Hydra here; `vla/cli/*` builds these from configs)."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("sync", "async")
SMOOTHINGS = ("none", "ensemble", "rtc")
HOLDS = ("last_action", "state")


@dataclass
class RuntimeConfig:
    """How the control loop schedules chunk inference and blends chunks.

    mode:
        "sync": infer when the executable part of the current chunk is used up, blocking: the
        robot holds (and every held period is a deadline miss) until the chunk is ready, then
        runs it from its first action (Diffusion Policy / LeRobot style).
        "async": a background worker computes the next chunk while the current one executes;
        a chunk computed from the observation at step s maps its action i to step s + i, and the
        actions whose time passed while it was computed are skipped.
    smoothing:
        "none": switch to the new chunk as soon as it is ready.
        "ensemble": ACT temporal ensembling: the action of a step is the weighted mean over every
        chunk that covers it, weight exp(-ensemble_decay * rank), rank 0 = oldest chunk.
        "rtc": real-time chunking (Black et al. 2025, arXiv 2506.07339): the actions that will
        run while the next chunk is computed (the estimated delay, in steps) are committed and
        passed to the policy as `prefix`; the new chunk takes over after them, so committed
        actions are never changed. Only meaningful with mode="async".
    n_obs_steps: observations stacked for the policy (To); the first is repeated at the start.
    n_action_steps: actions executed from a chunk before the next is due (Ta); async requests a
        chunk every Ta steps, or earlier when the queue would run dry within the estimated delay.
    margin_steps: extra steps of slack added to the estimated delay (trigger and RTC prefix).
    latency_window / latency_quantile / latency_ema: the delay estimate is
        max(EMA(latency; alpha=latency_ema), quantile(last latency_window latencies)).
    threaded: async inference on a worker thread. False computes the chunk at request time in the
        caller's thread; with a SimulatedClock the control timeline is the same (latency is
        accounted, not waited for), which policies that read the live simulator need.
    hold: what the robot is commanded when no action is ready: the last commanded action, or the
        measured joint state (with the last gripper command, so a grasp is not released).
    jerk_dims: the first `jerk_dims` action dimensions are joint positions used for jerk stats.
    pregate: async + threaded with a gate: the worker gates each chunk right after computing it,
        from the state at the request (what would run from there: the committed actions, then the
        chunk), so the control thread only checks that this still holds when the chunk goes in
        (else it gates there, from the state then). Keeps the gate's simulation off the period.
    """

    mode: str = "async"
    smoothing: str = "none"
    n_obs_steps: int = 2
    n_action_steps: int = 8
    ensemble_decay: float = 0.01
    margin_steps: int = 0
    latency_window: int = 20
    latency_quantile: float = 0.9
    latency_ema: float = 0.3
    threaded: bool = True
    hold: str = "last_action"
    jerk_dims: int = 6
    pregate: bool = True

    def __post_init__(self) -> None:
        n = type(self).__name__
        if self.mode not in MODES:
            raise ValueError(f"{n}.mode must be one of {MODES}, got {self.mode!r}")
        if self.smoothing not in SMOOTHINGS:
            raise ValueError(f"{n}.smoothing must be one of {SMOOTHINGS}, got {self.smoothing!r}")
        if self.hold not in HOLDS:
            raise ValueError(f"{n}.hold must be one of {HOLDS}, got {self.hold!r}")
        for f in ("n_obs_steps", "n_action_steps", "latency_window", "jerk_dims"):
            if int(getattr(self, f)) < 1:
                raise ValueError(f"{n}.{f} must be >= 1, got {getattr(self, f)}")
        if self.margin_steps < 0:
            raise ValueError(f"{n}.margin_steps must be >= 0, got {self.margin_steps}")
        if self.ensemble_decay < 0:
            raise ValueError(f"{n}.ensemble_decay must be >= 0, got {self.ensemble_decay}")
        if not 0.0 < self.latency_quantile <= 1.0:
            raise ValueError(f"{n}.latency_quantile must be in (0, 1], got {self.latency_quantile}")
        if not 0.0 < self.latency_ema <= 1.0:
            raise ValueError(f"{n}.latency_ema must be in (0, 1], got {self.latency_ema}")
        if self.smoothing == "rtc" and self.mode != "async":
            raise ValueError(
                f"{n}.smoothing='rtc' needs mode='async' (a synchronous loop executes nothing while "
                "it infers, so there is no prefix to commit)"
            )
