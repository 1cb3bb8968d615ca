"""Self-describing checkpoints: data, not pickled objects.

Layout of `run_dir/checkpoints/<step>/`:
    model.safetensors     policy weights (training copy)
    ema.safetensors       EMA weights (when the policy uses EMA; preferred for inference)
    config.json           {"format", "policy": name, "policy_config": {...}, "train_config": {...}, "step", ...}
    shape_meta.json       shape metadata from the task (as given by the caller)
    processor.json        the transform path of `vla.processor.Processor` (normalization statistics,
                          history, token layout), when the caller gives one
    normalizer.json       normalization statistics (callers without a processor; older checkpoints)
    encoder.json          {"fingerprint": ...} of the frozen encoder the tokens came from
    training_state.pt     optimizer / grad-scaler state and RNG states, for exact resume only

`load_policy` needs only `policies` and this module: it rebuilds the head by registry name from
config.json and loads safetensors weights. Each checkpoint is written to a temporary directory
and renamed into place, so a crash never leaves a half-written checkpoint that looks complete.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from policies import Policy, make_config, make_policy
from policies.ema import EMA

FORMAT = "vla-checkpoint/1"
CKPT_SUBDIR = "checkpoints"
_TMP_PREFIX = ".tmp-"

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint is incomplete, unreadable or does not fit the policy being built.

    The message is one line that starts with the checkpoint directory or file at fault, e.g.
    ``runs/x/checkpoints/200/ema.safetensors: unreadable safetensors file (...)``.
    """


class CheckpointFileMissingError(CheckpointError, FileNotFoundError):
    """A file a checkpoint needs is missing (also a FileNotFoundError). The message names the
    checkpoint directory, the missing file and what the directory holds."""


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
    processor: dict[str, Any] | None = None


# ---------------------------------------------------------------------- locating checkpoints
def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run, sorted by step."""
    root = Path(run_dir) / CKPT_SUBDIR
    if not root.is_dir():
        return []
    found = [(int(p.name), p) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(f for f in found if (f[1] / "config.json").is_file())


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """Where `save_checkpoint` puts the checkpoint of `step`."""
    return Path(run_dir) / CKPT_SUBDIR / str(step)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


def _contents(d: Path, limit: int = 8) -> str:
    """What directory `d` holds, for error messages: "a, b/, c" (or "nothing")."""
    try:
        names = sorted(f"{e.name}/" if e.is_dir() else e.name for e in d.iterdir())
    except OSError:
        return "nothing readable"
    if not names:
        return "nothing"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _missing(ckpt: Path, name: str, why: str = "") -> CheckpointFileMissingError:
    """The error for a checkpoint directory without the file `name`."""
    return CheckpointFileMissingError(
        f"{ckpt}: checkpoint has no {name}{why} (the directory holds: {_contents(ckpt)}); it may be an "
        "unfinished or damaged save: use another checkpoint of the run"
    )


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (-> its latest checkpoint).

    Raises:
        CheckpointFileMissingError: `path` does not exist, is a checkpoint without model.safetensors,
            or a run directory without a complete checkpoint (each named, with what it holds).
    """
    p = Path(path)
    if (p / "config.json").is_file():
        if not (p / "model.safetensors").is_file():
            raise _missing(p, "model.safetensors")
        return p
    latest = latest_checkpoint(p)
    if latest is not None:
        return latest
    if not p.exists():
        raise CheckpointFileMissingError(f"{p}: no such checkpoint or run directory")
    root = p / CKPT_SUBDIR
    partial = sorted(e.name for e in root.iterdir()) if root.is_dir() else []
    if partial:
        raise CheckpointFileMissingError(
            f"{p}: no complete checkpoint under {root} (found {', '.join(partial[:8])}: a checkpoint is "
            f"complete once its config.json is written; {_TMP_PREFIX}* directories are unfinished saves)"
        )
    raise CheckpointFileMissingError(
        f"{p}: neither a checkpoint (config.json + model.safetensors) nor a run directory "
        f"with checkpoints under {root} (the directory holds: {_contents(p)})"
    )


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
            raise _missing(path.parent, path.name)
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: invalid JSON ({e}); the file is truncated or corrupted") from e


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
    processor: dict[str, Any] | None = None,
    model_state: dict[str, torch.Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    optimizer_format: str = "param_ids",
) -> Path:
    """Write `run_dir/checkpoints/<step>/` atomically and return its path.

    model_state / optimizer_state: the full states to save instead of `policy.state_dict()` /
    `optimizer.state_dict()` (a sharded FSDP2 run gathers them first); optimizer_format says
    how the optimizer state is keyed ("param_ids": torch's own; "fsdp_full": by parameter name,
    `torch.distributed.checkpoint.state_dict`), so a resume can refuse the other kind.
    """
    final = checkpoint_dir(run_dir, step)
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{_TMP_PREFIX}{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    meta = {"format": FORMAT, "policy": policy.name, "step": str(step)}
    weights = model_state if model_state is not None else policy.state_dict()
    save_file(_tensors(weights), tmp / "model.safetensors", metadata=meta)
    if ema is not None:
        save_file(_tensors(ema.state_dict()), tmp / "ema.safetensors", metadata=meta)
    _write_json(tmp / "shape_meta.json", shape_meta)
    if processor is not None:
        _write_json(tmp / "processor.json", processor)
    if normalizer is not None or processor is None:
        _write_json(tmp / "normalizer.json", normalizer)
    _write_json(tmp / "encoder.json", {"fingerprint": encoder_fingerprint})
    torch.save(
        {
            "step": step,
            "optimizer": optimizer_state
            if optimizer_state is not None
            else (optimizer.state_dict() if optimizer is not None else None),
            "optimizer_format": optimizer_format,
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
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{ckpt / 'config.json'}: expected a JSON object, got {type(cfg).__name__}")
    for key in ("format", "policy", "policy_config", "step"):
        if key not in cfg:
            raise CheckpointError(f"{ckpt / 'config.json'}: missing field {key!r}")
    if cfg["format"] != FORMAT:
        raise CheckpointError(f"{ckpt / 'config.json'}: format {cfg['format']!r}, this code reads {FORMAT!r}")
    return cfg


def load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load a safetensors file into `module` (strict).

    Raises (naming the file): CheckpointFileMissingError when it is missing, CheckpointError when
    it is truncated/corrupted or its tensors do not match the module.
    """
    if not path.is_file():
        raise _missing(path.parent, path.name)
    try:
        weights = load_file(path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{path}: unreadable safetensors file ({e}); it is truncated or corrupted (an interrupted "
            "copy?): use another checkpoint of the run"
        ) from e
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the configured policy: {e}") from e


def load_training_state(ckpt: Path) -> dict[str, Any]:
    """The optimizer / grad-scaler / RNG state saved for an exact resume."""
    path = ckpt / "training_state.pt"
    if not path.is_file():
        raise _missing(ckpt, path.name, " (needed to resume training)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError... for a bad file
        raise CheckpointError(
            f"{path}: unreadable training state ({type(e).__name__}: {e}); it is truncated or corrupted"
        ) from e


def load_policy(
    path: str | Path, use_ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[Policy, CheckpointInfo]:
    """Rebuild a policy from a checkpoint or run directory (latest checkpoint), in eval mode.

    Loads EMA weights when `use_ema` and the checkpoint has them; without an EMA file it loads the
    raw weights, logs a one-line notice and records it (`CheckpointInfo.used_ema` False). Needs no
    training code.

    Raises:
        CheckpointFileMissingError / CheckpointError: a missing, truncated or mismatching file (named).
    """
    ckpt = resolve_checkpoint(path)
    cfg = read_config(ckpt)
    config = make_config(cfg["policy"], cfg["policy_config"], source=f"{ckpt / 'config.json'}:policy_config")
    policy = make_policy(cfg["policy"], config)
    ema_file = ckpt / "ema.safetensors"
    used_ema = use_ema and ema_file.is_file()
    if use_ema and not used_ema:
        if getattr(config, "use_ema", False):
            log.warning(
                "%s: no ema.safetensors; using the raw weights (the policy was trained with EMA)", ckpt
            )
        else:
            log.info(
                "%s: no ema.safetensors; using the raw weights (the policy was trained without EMA)", ckpt
            )
    load_weights(policy, ema_file if used_ema else ckpt / "model.safetensors")
    policy.to(device).eval()
    info = CheckpointInfo(
        path=ckpt,
        step=int(cfg["step"]),
        policy_name=cfg["policy"],
        normalizer=_read_json(ckpt / "normalizer.json", required=False),
        processor=_read_json(ckpt / "processor.json", required=False),
        shape_meta=_read_json(ckpt / "shape_meta.json", required=False),
        encoder_fingerprint=(_read_json(ckpt / "encoder.json", required=False) or {}).get("fingerprint"),
        train_config=cfg.get("train_config"),
        used_ema=used_ema,
    )
    return policy, info


def check_resumable(policy: Policy, ckpt: Path) -> None:
    """Raise ValueError naming config.json when `ckpt` was trained with another head or head config."""
    saved = read_config(ckpt)
    if saved["policy"] != policy.name:
        raise ValueError(
            f"{ckpt / 'config.json'}: run was trained with policy {saved['policy']!r}, not {policy.name!r}"
        )
    now = json.loads(json.dumps(policy.config.to_dict()))  # tuples -> lists, as stored
    old = saved["policy_config"]
    diff = sorted(k for k in set(now) | set(old) if now.get(k) != old.get(k))
    if diff:
        raise ValueError(
            f"{ckpt / 'config.json'}: policy_config differs from the policy being trained in {diff}; "
            "use a new run directory"
        )
