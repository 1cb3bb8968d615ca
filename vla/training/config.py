"""Training hyper-parameters (a plain dataclass; the CLI builds it from Hydra config)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(kw_only=True)
class TrainConfig:
    """Settings of `vla.training.train`. `steps` is the schedule length (cosine reaches its end there)."""

    steps: int = 10_000
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.95, 0.999)
    warmup_steps: int = 500
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    amp: bool = False  # mixed precision, CUDA only (bf16 where supported, else fp16 + GradScaler)
    compile: bool = False  # torch.compile the loss function
    device: str = "cpu"
    log_every: int = 50
    ckpt_every: int = 1000
    eval_every: int = 0  # 0: never (eval_fn is also called once at the end when given)
    keep_last_ckpts: int = 0  # 0: keep every checkpoint
    seed: int = 0
    progress: bool = True  # tqdm bar
    wandb: bool = False
    # CPU: switch between the configured torch threads and 1 by measured step time
    # (vla.training.threads.ThreadGovernor), so a competing process slows training gracefully. Off
    # by default: results then depend on the machine's load (1 and 2 threads round differently).
    adaptive_threads: bool = False
    wandb_project: str = "vla"
    # Micro-batches per optimizer step (gradients summed before the step): the batch a process
    # computes at once is batch_size / (processes * grad_accum_steps); the optimizer sees batch_size.
    grad_accum_steps: int = 1
    # Under torchrun: shard parameters, gradients and optimizer state over the processes (FSDP2,
    # torch.distributed.fsdp.fully_shard) instead of replicating them (DDP). For heads whose
    # optimizer state does not fit one device; the EMA copy stays whole on each rank.
    fsdp: bool = False

    def __post_init__(self) -> None:
        n = type(self).__name__
        for f in ("steps", "log_every", "grad_accum_steps"):
            if getattr(self, f) < 1:
                raise ValueError(f"{n}.{f} must be >= 1, got {getattr(self, f)}")
        for f in ("warmup_steps", "ckpt_every", "eval_every", "keep_last_ckpts", "grad_clip", "weight_decay"):
            if getattr(self, f) < 0:
                raise ValueError(f"{n}.{f} must be >= 0, got {getattr(self, f)}")
        if self.lr <= 0:
            raise ValueError(f"{n}.lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"{n}.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "train config") -> TrainConfig:
        """Build from a plain dict, raising on unknown keys (naming `source` and the key)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{source}: unknown field(s) {unknown} for TrainConfig; known fields: {sorted(known)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
