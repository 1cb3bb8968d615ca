"""Typed settings of `vla-bench` (the CLI builds them from configs/bench.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vla.encoders import EncoderConfig
from vla.fastpath import FastPathConfig
from vla.paths import CONFIG_DIR

DEVICE_CHOICES = ("auto", "cpu", "cuda", "all")


@dataclass
class HeadSpec:
    """One policy head to time: a label, its registry name and its config fields (shapes filled in)."""

    label: str
    policy: str
    values: dict[str, Any]


@dataclass
class SimMode:
    """One runtime variant of the simulator comparison."""

    mode: str  # sync | async
    smoothing: str = "none"  # none | ensemble | rtc

    def __post_init__(self) -> None:
        from vla.runtime import MODES, SMOOTHINGS

        if self.mode not in MODES or self.smoothing not in SMOOTHINGS:
            raise ValueError(
                f"sim mode {self.label!r}: mode must be one of {MODES} and smoothing one of {SMOOTHINGS} "
                "(written <mode>[+<smoothing>], e.g. async+rtc)"
            )
        if self.smoothing == "rtc" and self.mode != "async":
            raise ValueError(f"sim mode {self.label!r}: rtc smoothing needs mode async")

    @property
    def label(self) -> str:
        return self.mode if self.smoothing == "none" else f"{self.mode}+{self.smoothing}"


@dataclass
class BenchConfig:
    """What vla-bench measures.

    device: auto (cuda when present, else cpu) | cpu | cuda | all (cpu and cuda when present).
    encoder / encoder_random_if_missing: the frozen encoder; when its checkpoint is not on disk and the
        flag is set, a random-weight SigLIP of the same architecture is timed (reported as such).
    heads: every head timed at each of `denoise_steps` (diffusion) or once (transformer).
    pipeline_head: label of the head used for the full observation-to-action latency.
    checkpoint: a run/checkpoint directory: the full pipeline and the simulator use the trained policy.
    cameras / image_size / task / env_overrides: the observation (from the simulator task).
    gate_k: candidates of the best-of-K world-model check.
    sim_*: episodes per runtime variant on the default task; without a checkpoint the scripted expert
        is run as a chunk policy with the measured observation-to-action p50 injected as its latency.
    threads: torch CPU threads (1: measured fastest on a loaded 2-core CPU).
    """

    encoder: EncoderConfig
    heads: list[HeadSpec]
    device: str = "auto"
    encoder_random_if_missing: bool = True
    pipeline_head: str = "diffusion_unet"
    denoise_steps: tuple[int, ...] = (1, 2, 4, 8, 16)
    checkpoint: str | None = None
    task: str = "pick_cube"
    env_overrides: dict[str, Any] = field(default_factory=dict)
    cameras: tuple[str, ...] = ("front", "wrist")
    image_size: int = 96
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    instruction: str = "pick up the red cube"
    reps: int = 30
    warmup: int = 3
    gate_k: int = 8
    safety_config: str = str(CONFIG_DIR / "safety" / "ur5e_default.yaml")
    sim_modes: list[SimMode] = field(
        default_factory=lambda: [
            SimMode("sync"),
            SimMode("async"),
            SimMode("async", "ensemble"),
            SimMode("async", "rtc"),
        ]
    )
    sim_episodes: int = 2
    sim_max_steps: int | None = None
    sim_seed: int = 1000
    sim_safety: bool = True
    threads: int = 1
    fastpath: FastPathConfig = field(default_factory=FastPathConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        n = type(self).__name__
        if self.device not in DEVICE_CHOICES:
            raise ValueError(f"{n}.device must be one of {DEVICE_CHOICES}, got {self.device!r}")
        if not self.heads:
            raise ValueError(f"{n}.heads: need at least one head")
        labels = [h.label for h in self.heads]
        if self.pipeline_head not in labels:
            raise ValueError(f"{n}.pipeline_head={self.pipeline_head!r} is not one of the heads {labels}")
        if not self.denoise_steps or any(int(s) < 1 for s in self.denoise_steps):
            raise ValueError(
                f"{n}.denoise_steps must be a non-empty list of ints >= 1, got {self.denoise_steps}"
            )
        for f in ("reps", "gate_k", "sim_episodes", "threads", "image_size"):
            if int(getattr(self, f)) < 1:
                raise ValueError(f"{n}.{f} must be >= 1, got {getattr(self, f)}")
        if not self.cameras:
            raise ValueError(f"{n}.cameras: need at least one camera")
