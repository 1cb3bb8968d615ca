"""Contrastive (SigLIP sigmoid loss) pretraining of a small SiglipModel on simulator image/text pairs.

The result is saved with `save_pretrained` (weights, config, word tokenizer, preprocessor config) and
is from then on loaded frozen like any checkpoint: `configs/encoder/sim_siglip.yaml`.

Text runs exactly as the frozen encoder runs it (`vla.encoders.dual`): padded to `max_text_len`, no
attention mask (as SigLIP is trained); images go through the same `to_pixels` transform.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla.encoders.preprocess import ImagePreprocessing, to_pixels
from vla.pretrain.sim_pairs import PairConfig, ScenePairs, render_pairs
from vla.pretrain.tokenizer import build_word_tokenizer

# Words of the simulator's language that may not appear in a small training render (colours, kinds,
# verbs of every task template) so the vocabulary does not depend on which scenes were drawn.
BASE_VOCAB = (
    "red green blue yellow purple orange cube block pad object objects no in view from left to right and "
    "a an the pick up lift grab put place push stack on onto top of move slide"
)


@dataclass(frozen=True)
class SiglipModelSize:
    """Architecture of the small SigLIP (defaults sized for a 2-core CPU: ~1 M parameters)."""

    image_size: int = 96  # the simulator's default camera size: no resampling of its frames
    patch_size: int = 12  # 8 x 8 patches; a 4 cm cube is ~4 px wide at 96 px
    hidden_size: int = 128
    intermediate_size: int = 384
    vision_layers: int = 3
    text_layers: int = 2
    heads: int = 4
    max_text_len: int = 16


@dataclass(frozen=True)
class PretrainConfig:
    """What `vla-pretrain-encoder` does.

    out_dir: run directory the checkpoint (save_pretrained) and metrics.json go to.
    train / eval: scenes rendered for training and for held-out retrieval (disjoint seeds).
    steps, batch_size, lr, weight_decay, warmup_steps: optimisation (AdamW, cosine decay).
    crop_prob, crop_scale: share of training images replaced by a random crop around an object
        (side a `crop_scale` fraction of the frame), described by the objects inside it.
    grad_clip: max gradient norm.
    eval_batch: retrieval is top-1 among this many candidates (full frames, never crops).
    render_workers: processes that render the scenes (None: the CPU's cores up to 4; the same
        scenes for any count: `vla.pretrain.sim_pairs.render_pairs`).
    time_limit_s: optional safety valve: training stops early after this many seconds. None (the
        default) stops on `steps` alone, so the encoder, and every result downstream of it, is the
        same on a fast and a slow machine (a 200 s limit stopped two demo runs at 631 and 700 steps).
    """

    out_dir: str = "outputs/encoder/sim_siglip"
    model: SiglipModelSize = field(default_factory=SiglipModelSize)
    train: PairConfig = field(default_factory=lambda: PairConfig(n_scenes=1200, seed=0))
    eval: PairConfig = field(default_factory=lambda: PairConfig(n_scenes=256, seed=1_000_000))
    steps: int = 700
    batch_size: int = 64
    lr: float = 1.5e-4
    crop_prob: float = 0.5
    crop_scale: tuple[float, float] = (0.3, 0.7)
    grad_clip: float = 1.0
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    eval_batch: int = 32
    seed: int = 0
    time_limit_s: float | None = None
    log_every: int = 50
    render_workers: int | None = None

    def __post_init__(self) -> None:
        if self.render_workers is not None and (
            not isinstance(self.render_workers, int) or self.render_workers < 1
        ):
            raise ValueError(
                f"PretrainConfig.render_workers must be an integer >= 1 or None, got {self.render_workers!r}"
            )
        if (
            self.train.seed + self.train.n_scenes > self.eval.seed
            and self.eval.seed + self.eval.n_scenes > self.train.seed
        ):
            raise ValueError(
                "PretrainConfig: train and eval scene seeds overlap; held-out scenes must be unseen"
            )
        if self.eval.n_scenes < self.eval_batch:
            raise ValueError(
                f"PretrainConfig.eval.n_scenes={self.eval.n_scenes} < eval_batch={self.eval_batch}"
            )
        if self.model.image_size % self.model.patch_size:
            raise ValueError("PretrainConfig.model.image_size must be a multiple of patch_size")


def preprocessing(size: SiglipModelSize) -> ImagePreprocessing:
    """SigLIP's normalisation ([-1, 1]); bilinear + antialias resize (saved as resample=2)."""
    return ImagePreprocessing(size.image_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")


def build_model(size: SiglipModelSize, tok: Any, seed: int, logit_bias: float = -10.0) -> torch.nn.Module:
    """A randomly initialised SiglipModel of `size` over the vocabulary of `tok`."""
    from transformers import SiglipConfig, SiglipModel

    torch.manual_seed(seed)
    common = dict(
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_attention_heads=size.heads,
    )
    conf = SiglipConfig(
        vision_config=dict(
            image_size=size.image_size,
            patch_size=size.patch_size,
            num_hidden_layers=size.vision_layers,
            **common,
        ),
        text_config=dict(
            vocab_size=len(tok),
            max_position_embeddings=size.max_text_len,
            num_hidden_layers=size.text_layers,
            pad_token_id=tok.pad_token_id,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            projection_size=size.hidden_size,
            **common,
        ),
    )
    model = SiglipModel(conf)
    # SigLIP's temperature init t' = log 10 (transformers initialises scale 1 and bias 0, where the
    # fastest way down the loss is to push every logit negative). The bias starts at the log prior
    # odds of a positive pair, -log(batch): the loss then only falls by telling pairs apart.
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(logit_bias)
    return model


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5% of `lr`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def _tokenize(tok, texts: list[str], max_len: int) -> torch.Tensor:
    return tok(texts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")[
        "input_ids"
    ]


@torch.no_grad()
def retrieval_top1(
    model, tok, pairs: ScenePairs, pre: ImagePreprocessing, max_len: int, batch: int, kind: str = "ordered"
) -> dict[str, float]:
    """Image -> text top-1 accuracy among `batch` candidates (the batch's own texts), per camera.

    A retrieval counts as correct when the chosen text is the same string as the image's own (two
    scenes of a batch may share a description). Also reports the chance level of that criterion.
    """
    model.eval()
    out: dict[str, float] = {}
    for cam, imgs in pairs.images.items():
        hits = n = 0
        chance = 0.0
        for s in range(0, len(pairs) - batch + 1, batch):
            texts = [pairs.texts[cam][i][kind] for i in range(s, s + batch)]
            img = model.get_image_features(pixel_values=to_pixels(imgs[s : s + batch], pre))
            txt = model.get_text_features(input_ids=_tokenize(tok, texts, max_len))
            img = getattr(img, "pooler_output", img)
            txt = getattr(txt, "pooler_output", txt)
            sim = torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T
            best = sim.argmax(1).tolist()
            hits += sum(texts[b] == texts[i] for i, b in enumerate(best))
            chance += sum(texts.count(t) / batch for t in texts)
            n += batch
        out[f"{cam}_{kind}_top1"] = hits / n
        out[f"{cam}_{kind}_chance"] = chance / n
    return out


def sample_batch(
    train: ScenePairs,
    pool: list[tuple[str, int]],
    pixels: dict[str, torch.Tensor],
    rng: random.Random,
    cfg: PretrainConfig,
    pre: ImagePreprocessing,
    reword: Callable[[str, int, str], str] | None = None,
) -> tuple[list[torch.Tensor], list[str]]:
    """`cfg.batch_size` (camera, scene) images, each a full frame with one of its texts or (share
    `crop_prob`) a crop with the objects inside it; `reword(camera, scene, text)` may re-word a full
    frame's text (LiT: paraphrased instructions). Returns pixels (3, S, S) each, and the texts."""
    px, texts = [], []
    for c, i in rng.sample(pool, cfg.batch_size):
        if rng.random() < cfg.crop_prob:
            crop, text = train.sample_crop(c, i, rng, cfg.crop_scale)
            px.append(to_pixels(crop[None], pre)[0])
        else:
            px.append(pixels[c][i])
            text = train.sample_text(c, i, rng)
            if reword is not None:
                text = reword(c, i, text)
        texts.append(text)
    return px, texts


def pretrain(cfg: PretrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Render pairs, train, evaluate held-out retrieval, save the checkpoint. Returns the metrics."""
    t0 = time.time()
    rng = random.Random(cfg.seed)
    train, held_out = render_pairs(cfg.train, cfg.render_workers), render_pairs(cfg.eval, cfg.render_workers)
    t_render = time.time() - t0
    log(f"rendered {len(train)} train + {len(held_out)} held-out scenes in {t_render:.1f}s")
    tok = build_word_tokenizer([BASE_VOCAB, *train.corpus()])
    size, pre = cfg.model, preprocessing(cfg.model)
    model = build_model(size, tok, cfg.seed, logit_bias=-math.log(cfg.batch_size))
    n_params = sum(p.numel() for p in model.parameters())
    log(f"SiglipModel: {n_params / 1e6:.2f} M parameters, vocabulary {len(tok)} words")
    before = retrieval_top1(model, tok, held_out, pre, size.max_text_len, cfg.eval_batch)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    cams = list(train.images)
    # Camera frames as one pool of (camera, scene) images; pixels computed once, up front.
    pixels = {c: to_pixels(train.images[c], pre) for c in cams}
    pool = [(c, i) for c in cams for i in range(len(train))]
    t_train, step, losses = time.time(), 0, []
    model.train()
    for step in range(cfg.steps):
        if cfg.time_limit_s is not None and time.time() - t_train > cfg.time_limit_s:
            log(f"time limit {cfg.time_limit_s:.0f}s reached at step {step}")
            break
        px, texts = sample_batch(train, pool, pixels, rng, cfg, pre)
        ids = _tokenize(tok, texts, size.max_text_len)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = model(input_ids=ids, pixel_values=torch.stack(px), return_loss=True).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # Small batches of near-identical scenes: large early steps collapse both towers to constant
        # features (observed at lr >= 5e-4 without clipping).
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps - 1:
            log(f"step {step:4d}  loss {np.mean(losses[-cfg.log_every :]):.4f}  lr {lr_at(step, cfg):.2e}")
    t_train = time.time() - t_train
    after = retrieval_top1(model, tok, held_out, pre, size.max_text_len, cfg.eval_batch)
    after_instr = retrieval_top1(
        model, tok, held_out, pre, size.max_text_len, cfg.eval_batch, kind="instruction"
    )
    out = Path(cfg.out_dir)
    save_checkpoint(model, tok, pre, out)
    metrics = {
        "steps_run": len(losses),
        "final_loss": float(np.mean(losses[-cfg.log_every :])) if losses else None,
        "render_s": t_render,
        "train_s": t_train,
        "total_s": time.time() - t0,
        "n_params": n_params,
        "held_out_untrained": before,
        "held_out": {**after, **after_instr},
        "config": asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log(f"held-out image->text top-1 (batch {cfg.eval_batch}): {json.dumps(metrics['held_out'])}")
    return metrics


def save_checkpoint(model, tok, pre: ImagePreprocessing, out: Path) -> None:
    """save_pretrained of model + tokenizer + an image processor config matching `to_pixels`."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    save_image_processor(pre, out)


def save_image_processor(pre: ImagePreprocessing, out: Path) -> None:
    """preprocessor_config.json matching `to_pixels` with `pre` (what the encoder loader reads)."""
    from transformers import SiglipImageProcessor

    SiglipImageProcessor(
        size={"height": pre.size, "width": pre.size},
        resample=2,
        image_mean=list(pre.mean),
        image_std=list(pre.std),
    ).save_pretrained(out)
