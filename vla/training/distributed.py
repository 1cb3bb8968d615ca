"""Multi-process training with PyTorch's own engine: torchrun + DistributedDataParallel.

    torchrun --standalone --nproc_per_node=2 -m vla.cli.train experiment=debug        # CPU: gloo
    torchrun --nproc_per_node=8 -m vla.cli.train train.device=cuda                     # GPUs: NCCL
    torchrun --nnodes=2 --node_rank=$R --rdzv_backend=c10d --rdzv_endpoint=$HOST:29500 \\
        --nproc_per_node=8 -m vla.cli.train train.device=cuda                          # 2 nodes

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR in each process's environment;
`init_from_env` joins the process group they describe (a no-op `DistContext` without them).

The global batch is what `batch_size` says, whatever the number of processes: each step, the
sampler draws the same `batch_size` indices on every rank (a function of seed and step) and rank r
takes the r-th contiguous slice; gradient accumulation splits that slice again. The loss noise
(diffusion noise, timesteps, state noise) is drawn for the whole global batch from the shared RNG
stream and sliced the same way. So N ranks x B/N samples follow the same parameter trajectory as
1 rank x B (up to float summation order), and a checkpoint resumes under any number of ranks.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from policies import Policy


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job. A single process is rank 0 of world size 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "gloo" / "nccl" when a process group is up

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, checkpoints and evaluates."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (e.g. the run directory, whose name has a timestamp)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def any_true(self, flag: bool) -> bool:
        """True on every rank if it is true on any (e.g. a Ctrl-C seen by one process)."""
        if not self.enabled:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.reduce_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, value: float) -> float:
        """The mean of a float over ranks (for logging)."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.reduce_device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    @property
    def reduce_device(self) -> torch.device:
        # NCCL reduces CUDA tensors only; gloo CPU tensors.
        return (
            torch.device("cuda", torch.cuda.current_device())
            if self.backend == "nccl"
            else torch.device("cpu")
        )

    def shard_slice(self, global_batch: int, what: str = "batch_size") -> slice:
        """This rank's contiguous part of a global batch of `global_batch` samples."""
        if global_batch % self.world_size:
            raise ValueError(
                f"{what}={global_batch} is not divisible by the {self.world_size} training processes: "
                f"use a multiple of {self.world_size} (it is the global batch, split over the processes)"
            )
        per = global_batch // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)


SINGLE = DistContext()


class LossModule(torch.nn.Module):
    """`forward(batch) = policy.compute_loss(batch)`: DistributedDataParallel synchronizes the
    gradients of what runs through its wrapped module's forward, and a head's loss is a method."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        return self.policy.compute_loss(batch)


def step_noise(policy: Policy, global_batch: int, seed: int, step: int) -> dict[str, torch.Tensor]:
    """The loss noise of step `step` for the whole global batch: a function of (seed, step) only,
    so every rank draws the same and a resumed run the same as an uninterrupted one."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % 2**63)
    return policy.loss_noise(global_batch, g)


def micro_batches(batch: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Split a batch into n equal micro-batches along dim 0 (tensors; other values are shared)."""
    if n == 1:
        return [batch]
    b = int(batch["action"].shape[0])
    if b % n:
        raise ValueError(
            f"TrainConfig.grad_accum_steps={n} does not divide the per-process batch of {b} samples"
        )
    m = b // n
    return [
        {k: v[i * m : (i + 1) * m] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        for i in range(n)
    ]


def env_world_size() -> int:
    """WORLD_SIZE of the launcher's environment (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def device_for(device: str, ctx: DistContext) -> str:
    """The device of this rank: `cuda` -> `cuda:<local_rank>` (one GPU per process); others unchanged."""
    if ctx.enabled and device == "cuda":
        return f"cuda:{ctx.local_rank}"
    return device


def current() -> DistContext:
    """The context of an already initialized process group (SINGLE when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=str(dist.get_backend()),
    )


def init_from_env(device: str = "cpu", timeout_s: float = 1800.0) -> DistContext:
    """Join the process group torchrun describes in the environment (NCCL for `device=cuda`, else
    gloo); SINGLE when WORLD_SIZE is unset or 1. Idempotent: an initialized group is reused."""
    if env_world_size() <= 1:
        return SINGLE
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return current()


def shutdown() -> None:
    """Leave the process group (end of a torchrun job)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def main_first(ctx: DistContext) -> Iterator[None]:
    """Rank 0 runs the body first (e.g. writing cached embeddings into the dataset), the other ranks
    after it (they then read what it wrote). Single process: just the body."""
    if ctx.enabled and not ctx.is_main:
        dist.barrier()
    try:
        yield
    finally:
        if ctx.enabled and ctx.is_main:
            dist.barrier()


# ---------------------------------------------------------------------------------- FSDP2
# `train.fsdp=true` under torchrun: parameters, gradients and optimizer state are sharded over the
# ranks (torch.distributed.fsdp.fully_shard, "FSDP2"), gathered for each forward/backward. The
# head is sharded as one unit (its loss is a method, not a module's forward, so per-submodule
# units would not all see their hooks). Checkpoints hold the gathered full state: the same files
# as a DDP or single-process run (vla-eval loads them); the optimizer state is keyed by name.
_PREFIX = "policy."


def shard_fsdp(loss_module: torch.nn.Module, device: torch.device, ctx: DistContext) -> torch.nn.Module:
    """Shard `loss_module` (a `LossModule`) in place over all ranks; returns it."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (ctx.world_size,))
    fully_shard(loss_module, mesh=mesh)
    return loss_module


def _options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(loss_module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The head's full state dict, gathered (a collective: every rank calls it; rank 0 gets it)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    sd = get_model_state_dict(loss_module, options=_options())
    return {k.removeprefix(_PREFIX): v for k, v in sd.items()}


def full_optimizer_state(loss_module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's full state keyed by parameter name (a collective, like `full_model_state`)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(loss_module, optimizer, options=_options())


def load_full_optimizer_state(
    loss_module: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load a `full_optimizer_state` into the sharded optimizer (every rank passes the full state)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(
        loss_module, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
    )


def full_value(t: torch.Tensor) -> torch.Tensor:
    """A sharded (DTensor) value gathered whole; a plain tensor as it is."""
    gather = getattr(t, "full_tensor", None)
    return gather() if callable(gather) else t
