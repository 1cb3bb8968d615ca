"""Load a checkpoint (local directory or cached hub id) through `transformers` Auto classes.

There is no hub access at run time: a hub id that is not in the local cache fails with one
`EncoderLoadError` that says how to point `model=` at a local copy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vla.encoders.config import EncoderConfig
from vla.encoders.preprocess import ImagePreprocessing
from vla.paths import REPO_ROOT

# model_type values each family accepts (config.json "model_type").
MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "siglip": ("siglip",),
    "siglip2": ("siglip2",),
    "clip": ("clip",),
    "lit": ("vision-text-dual-encoder",),
    "paligemma": ("paligemma",),
    "smolvlm": ("smolvlm", "idefics3"),
}
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# PIL resample codes used in preprocessor_config.json -> torch interpolation modes.
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "bilinear", 4: "bilinear", 5: "bicubic"}


class EncoderLoadError(RuntimeError):
    """A checkpoint could not be found or does not match the configured family."""


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ) not in ("0", "", "false", "False")


def not_found_message(cfg: EncoderConfig, cause: BaseException | None = None) -> str:
    local = f"outputs/models/{cfg.model.split('/')[-1]}"
    why = "hub access is disabled (HF_HUB_OFFLINE=1)" if _offline() else "it could not be downloaded"
    return (
        f"encoder model {cfg.model!r} (family {cfg.family!r}) is not a local directory and is not in the "
        f"Hugging Face cache, and {why}. Point the config at a local copy: download it on a machine with "
        f"hub access (`huggingface-cli download {cfg.model} --local-dir {local}`), copy it here and set "
        f"`encoder.model={local}` (a directory written by save_pretrained, with config.json, weights and "
        f"tokenizer files). Cause: {type(cause).__name__ if cause else 'missing'}: {cause}"
    )


@dataclass(frozen=True)
class ResolvedCheckpoint:
    """Where a checkpoint's files are: a local directory (given or from the hub cache)."""

    source: str  # what the config said
    directory: Path


def resolve_checkpoint(cfg: EncoderConfig) -> ResolvedCheckpoint:
    """Find the checkpoint's directory without touching the network when offline."""
    p = Path(cfg.model).expanduser()
    if not p.is_absolute() and not p.exists() and (REPO_ROOT / p).is_dir():
        p = REPO_ROOT / p  # repo-relative run directories (outputs/...) work from any cwd
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise EncoderLoadError(
                f"encoder.model={cfg.model!r} is a directory without config.json; expected a directory "
                "written by save_pretrained (config.json, *.safetensors, tokenizer files)"
            )
        return ResolvedCheckpoint(cfg.model, p.resolve())
    if p.is_absolute() or cfg.model.startswith((".", "~")) or cfg.model.count("/") > 1:
        raise EncoderLoadError(f"encoder.model={cfg.model!r}: local directory does not exist")
    try:
        from huggingface_hub import snapshot_download

        d = snapshot_download(cfg.model, local_files_only=_offline())
    except Exception as e:  # any hub/cache failure becomes the one clear message
        raise EncoderLoadError(not_found_message(cfg, e)) from e
    return ResolvedCheckpoint(cfg.model, Path(d))


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EncoderLoadError(f"{path}: not valid JSON ({e})") from e


def check_family(cfg: EncoderConfig, ckpt: ResolvedCheckpoint) -> dict[str, Any]:
    """config.json of the checkpoint, checked against the configured family."""
    conf = read_json(ckpt.directory / "config.json")
    mt = conf.get("model_type")
    if mt not in MODEL_TYPES[cfg.family]:
        raise EncoderLoadError(
            f"{ckpt.directory / 'config.json'}: model_type={mt!r} does not match encoder.family="
            f"{cfg.family!r} (expects {MODEL_TYPES[cfg.family]})"
        )
    return conf


def load_model(cfg: EncoderConfig, ckpt: ResolvedCheckpoint) -> torch.nn.Module:
    """The full pretrained model through an Auto class, in `cfg.dtype` on `cfg.device`."""
    from transformers import AutoModel, AutoModelForImageTextToText

    auto = AutoModelForImageTextToText if cfg.is_generative else AutoModel
    try:
        model = auto.from_pretrained(str(ckpt.directory), dtype=TORCH_DTYPES[cfg.dtype])
    except OSError as e:
        raise EncoderLoadError(f"{ckpt.directory}: cannot load weights for {cfg.family!r}: {e}") from e
    return model.to(cfg.device)


# Tokenizers saved from a plain `tokenizers` object: load them as such, not as the family's default
# tokenizer class (AutoTokenizer would map a siglip2 checkpoint to the Gemma tokenizer).
GENERIC_TOKENIZERS = ("PreTrainedTokenizerFast", "TokenizersBackend")


def load_tokenizer(cfg: EncoderConfig, ckpt: ResolvedCheckpoint) -> Any:
    """The tokenizer saved beside the weights; the class named in tokenizer_config.json wins."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tc_path = ckpt.directory / "tokenizer_config.json"
    declared = read_json(tc_path).get("tokenizer_class") if tc_path.is_file() else None
    try:
        if declared in GENERIC_TOKENIZERS:
            return PreTrainedTokenizerFast.from_pretrained(str(ckpt.directory))
        return AutoTokenizer.from_pretrained(str(ckpt.directory))
    except (OSError, ValueError) as e:
        raise EncoderLoadError(
            f"{ckpt.directory}: no usable tokenizer ({e}); save one beside the weights "
            "(tokenizer.save_pretrained(dir))"
        ) from e


def read_preprocessing(
    cfg: EncoderConfig, ckpt: ResolvedCheckpoint, model_image_size: int
) -> ImagePreprocessing:
    """Preprocessing of the checkpoint; defaults are the family's published ones when a field is absent."""
    path = ckpt.directory / "preprocessor_config.json"
    pc = read_json(path) if path.is_file() else {}
    default_mean = (0.48145466, 0.4578275, 0.40821073) if cfg.family == "clip" else (0.5, 0.5, 0.5)
    default_std = (0.26862954, 0.26130258, 0.27577711) if cfg.family == "clip" else (0.5, 0.5, 0.5)
    mean = tuple(float(x) for x in pc.get("image_mean", default_mean))
    std = tuple(float(x) for x in pc.get("image_std", default_std))
    if len(mean) != 3 or len(std) != 3:
        raise EncoderLoadError(f"{path}: image_mean/image_std must have 3 values, got {mean} / {std}")
    resample = int(pc.get("resample", 3))
    size = cfg.image_size or model_image_size
    return ImagePreprocessing(
        size, mean, std, RESAMPLE.get(resample, "bilinear"), float(pc.get("rescale_factor", 1 / 255))
    )
