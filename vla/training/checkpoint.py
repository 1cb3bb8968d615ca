"""Self-describing checkpoints: data, not pickled objects.

Layout of `run_dir/checkpoints/<step>/`:
    model.safetensors     policy weights (training copy)
    ema.safetensors       EMA weights (when the policy uses EMA; preferred for inference)
    config.json           {"format", "policy": name, "policy_config": {...}, "train_config": {...}, "step", ...}
    shape_meta.json       shape metadata from the task (as given by the caller)
    normalizer.json       normalization statistics (as given by the caller)
    encoder.json          {"fingerprint": ...} of the frozen encoder the tokens came from
    training_state.pt     optimizer / grad-scaler state and RNG states, for exact resume only

`load_policy` needs only `policies` and this module: it rebuilds the head by registry name from
config.json and loads safetensors weights. Each checkpoint is written to a temporary directory
and renamed into place, so a crash never leaves a half-written checkpoint that looks complete.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from policies import Policy, make_config, make_policy
from policies.ema import EMA

FORMAT = "vla-checkpoint/1"
CKPT_SUBDIR = "checkpoints"


@dataclass
class CheckpointInfo:
    """Everything a checkpoint carries besides the policy weights."""

    path: Path
    step: int
    policy_name: str
    normalizer: dict[str, Any] | None
    shape_meta: dict[str, Any] | None
    encoder_fingerprint: Any
    train_config: dict[str, Any] | None
    used_ema: bool


# ---------------------------------------------------------------------- locating checkpoints
def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, sorted by step."""
    root = Path(run_dir) / CKPT_SUBDIR
    if not root.is_dir():
        return []
    found = [(int(p.name), p) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(f for f in found if (f[1] / "config.json").is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (-> its latest checkpoint)."""
    p = Path(path)
    if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
        return p
    latest = latest_checkpoint(p)
    if latest is None:
        raise FileNotFoundError(
            f"{p}: neither a checkpoint (config.json + model.safetensors) nor a run directory "
            f"with checkpoints under {p / CKPT_SUBDIR}"
        )
    return latest


# ---------------------------------------------------------------------- JSON helpers
def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().tolist()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")


def _read_json(path: Path, required: bool = True) -> Any:
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"checkpoint file missing: {path}")
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from e


# ---------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as tensors/plain data (loadable with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the legacy global stream is what libraries use)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------- save / load
def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    policy: Policy,
    *,
    ema: EMA | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    train_config: dict[str, Any] | None = None,
    normalizer: dict[str, Any] | None = None,
    shape_meta: dict[str, Any] | None = None,
    encoder_fingerprint: Any = None,
) -> Path:
    """Write `run_dir/checkpoints/<step>/` atomically and return its path."""
    root = Path(run_dir) / CKPT_SUBDIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / str(step)
    tmp = root / f".tmp-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    meta = {"format": FORMAT, "policy": policy.name, "step": str(step)}
    save_file(_tensors(policy.state_dict()), tmp / "model.safetensors", metadata=meta)
    if ema is not None:
        save_file(_tensors(ema.state_dict()), tmp / "ema.safetensors", metadata=meta)
    _write_json(tmp / "shape_meta.json", shape_meta)
    _write_json(tmp / "normalizer.json", normalizer)
    _write_json(tmp / "encoder.json", {"fingerprint": encoder_fingerprint})
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_state(),
        },
        tmp / "training_state.pt",
    )
    # config.json last: its presence marks a complete checkpoint.
    _write_json(
        tmp / "config.json",
        {
            "format": FORMAT,
            "policy": policy.name,
            "policy_config": policy.config.to_dict(),
            "train_config": train_config,
            "step": step,
            "ema_num_updates": ema.num_updates if ema is not None else None,
        },
    )
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def read_config(ckpt: Path) -> dict[str, Any]:
    cfg = _read_json(ckpt / "config.json")
    for key in ("format", "policy", "policy_config", "step"):
        if key not in cfg:
            raise ValueError(f"{ckpt / 'config.json'}: missing field {key!r}")
    if cfg["format"] != FORMAT:
        raise ValueError(f"{ckpt / 'config.json'}: format {cfg['format']!r}, this code reads {FORMAT!r}")
    return cfg


def load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load a safetensors file into `module` (strict), naming the file on mismatch."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file missing: {path}")
    try:
        module.load_state_dict(load_file(path), strict=True)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the configured policy: {e}") from e


def load_training_state(ckpt: Path) -> dict[str, Any]:
    path = ckpt / "training_state.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file missing (needed to resume): {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_policy(
    path: str | Path, use_ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[Policy, CheckpointInfo]:
    """Rebuild a policy from a checkpoint or run directory (latest checkpoint), in eval mode.

    Loads EMA weights when `use_ema` and the checkpoint has them. Needs no training code.
    """
    ckpt = resolve_checkpoint(path)
    cfg = read_config(ckpt)
    config = make_config(cfg["policy"], cfg["policy_config"], source=f"{ckpt / 'config.json'}:policy_config")
    policy = make_policy(cfg["policy"], config)
    ema_file = ckpt / "ema.safetensors"
    used_ema = use_ema and ema_file.is_file()
    load_weights(policy, ema_file if used_ema else ckpt / "model.safetensors")
    policy.to(device).eval()
    info = CheckpointInfo(
        path=ckpt,
        step=int(cfg["step"]),
        policy_name=cfg["policy"],
        normalizer=_read_json(ckpt / "normalizer.json", required=False),
        shape_meta=_read_json(ckpt / "shape_meta.json", required=False),
        encoder_fingerprint=(_read_json(ckpt / "encoder.json", required=False) or {}).get("fingerprint"),
        train_config=cfg.get("train_config"),
        used_ema=used_ema,
    )
    return policy, info
