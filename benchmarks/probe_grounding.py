"""Grounding probe: can a token front end find the cube the instruction names, from frozen encoder tokens?

    python -m benchmarks.probe_grounding [--encoder outputs/encoder/sim_siglip_r2] [--sizes 100,1000,4000]
        [--n-test 1000] [--steps 1500] [--front-ends attention,attention_text,mean,spatial_softmax]
        [--threads 1] [--quick]

A cheap proxy for the policy's visual grounding on pick_cube ("pick up the {colour} cube" among 2
distractor cubes), without rolling out a single episode:

1. Scenes: `sim.registry.make("pick_cube", cameras=("front", "wrist"), image_size=96)`, reset with
   training seeds [0, max(sizes)) and disjoint test seeds [1_000_000, 1_000_000 + n_test); the first
   frames of both cameras, the instruction and the (x, y) of every cube are kept.
2. Tokens: the frozen encoder (as `vla-train` builds it, max_text_len 16) in the pipeline's layout,
   [front patch tokens][wrist patch tokens][text tokens], with `token_mask` and `text_mask`.
3. Probes: each front end is the REAL `policies.layers.TokenPool` at the diffusion head's defaults
   (d_model 128, 4 heads, 8 queries / keypoints per camera), followed by the same MLP readout
   (flattened pooled tokens -> 256 -> 256 -> 2) regressing the named cube's (x, y), normalised by
   the training-set mean and std. AdamW (lr 1e-3, weight decay 1e-4), one-cycle schedule, batch 128.
   Smaller training sets are prefixes of the largest, so rows differ only in the number of scenes.
4. Metrics on the held-out scenes: mean and median xy error [cm], and "target identified", the
   share of scenes where the cube nearest the prediction is the named one (chance = 1 / 3 cubes).

Prints a table (front end x training-set size) and writes benchmarks/results/probe_grounding.json.
Takes about 15 minutes at the defaults on one CPU thread; `--quick` is a one-minute smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results" / "probe_grounding.json"
ROOT = Path(__file__).resolve().parent.parent
TEST_SEED0 = 1_000_000  # far above any training seed: train and test scenes never overlap
FRONT_ENDS = ("attention", "attention_text", "mean", "spatial_softmax")
D_MODEL, N_HEADS, N_QUERIES = 128, 4, 8  # configs/policy/diffusion.yaml
MAX_TEXT_LEN = 16
# About 15 minutes on one busy CPU thread. 1000 scenes at 1500 steps is not converged: more steps help.
FULL_DEFAULTS = {"sizes": [100, 1000, 4000], "n_test": 1000, "steps": 1500}


@dataclass
class Scenes:
    """First frames of pick_cube scenes.

    front, wrist: uint8 (S, H, W, 3); instructions: S strings; cube_xy: float32 (S, K, 2) world
    (x, y) [m] of every cube, the named (target) cube first.
    """

    front: np.ndarray
    wrist: np.ndarray
    instructions: list[str]
    cube_xy: np.ndarray


@dataclass
class Tokens:
    """Encoder tokens in the pipeline layout: tokens float16 (S, N, D) (halved to keep 5000 scenes
    in ~200 MB), token_mask (S, N) bool, text_mask (S, N) bool, N = 2 * tokens_per_image + 16."""

    tokens: torch.Tensor
    token_mask: torch.Tensor
    text_mask: torch.Tensor


def render_scenes(seeds: range, image_size: int = 96) -> Scenes:
    """Reset pick_cube with each seed and record both camera frames, the instruction and cube (x, y)."""
    from sim.registry import make

    env = make("pick_cube", cameras=("front", "wrist"), image_size=image_size)
    front, wrist, instr, xy = [], [], [], []
    try:
        for s in seeds:
            obs, _ = env.reset(seed=s)
            task = env.task
            names = list(task.cube_names)
            if task.target != names[0]:
                raise RuntimeError(f"pick_cube seed {s}: task.target {task.target!r} is not cube_names[0]")
            front.append(obs["image_front"])
            wrist.append(obs["image_wrist"])
            instr.append(str(obs["instruction"]))
            xy.append([np.asarray(task.cube_pos(n), dtype=np.float32)[:2] for n in names])
    finally:
        env.close()
    return Scenes(np.stack(front), np.stack(wrist), instr, np.asarray(xy, dtype=np.float32))


def encode_scenes(enc, scenes: Scenes, batch: int = 256) -> Tokens:
    """Frozen-encoder tokens of every scene, laid out as `vla.training.batches` does."""
    from vla.processor import text_token_mask

    toks, masks = [], []
    for i in range(0, len(scenes.instructions), batch):
        img = enc.encode_images({"front": scenes.front[i : i + batch], "wrist": scenes.wrist[i : i + batch]})
        txt = enc.encode_text(scenes.instructions[i : i + batch])
        toks.append(torch.cat([img.tokens, txt.tokens], 1).half())
        masks.append(torch.cat([img.mask, txt.mask], 1))
    mask = torch.cat(masks)
    return Tokens(torch.cat(toks), mask, text_token_mask(mask, MAX_TEXT_LEN))


class Probe(nn.Module):
    """TokenPool front end + MLP readout: tokens (B, N, D) -> normalised (x, y) of the named cube (B, 2)."""

    def __init__(self, front_end: str, token_dim: int, n_tokens: int, tokens_per_camera: int) -> None:
        super().__init__()
        from policies.layers import TokenPool

        mode = "attention" if front_end == "attention_text" else front_end
        self.pool = TokenPool(
            mode,
            token_dim,
            D_MODEL,
            N_QUERIES,
            N_HEADS,
            text_cond=front_end == "attention_text",
            n_cameras=2,
            tokens_per_camera=tokens_per_camera,
        )
        width = self.pool.out_tokens(n_tokens) * D_MODEL
        self.readout = nn.Sequential(
            nn.Linear(width, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(), nn.Linear(256, 2)
        )

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        pooled, _ = self.pool(tokens, mask, text_mask)
        return self.readout(pooled.flatten(1))


@dataclass
class ProbeResult:
    front_end: str
    n_train: int
    mean_err_cm: float
    median_err_cm: float
    target_identified: float  # fraction of test scenes
    train_s: float
    final_loss: float
    n_params: int


def train_probe(
    front_end: str,
    train: Tokens,
    train_xy: np.ndarray,
    n_train: int,
    test: Tokens,
    test_xy: np.ndarray,
    tokens_per_camera: int,
    steps: int,
    batch: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> ProbeResult:
    """Train one probe on the first `n_train` training scenes; evaluate on every test scene.

    train_xy / test_xy: (S, K, 2) cube positions [m], the named cube first.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    target = torch.from_numpy(train_xy[:n_train, 0])
    mu, sd = target.mean(0), target.std(0)
    y_all = (target - mu) / sd
    model = Probe(front_end, train.tokens.shape[-1], train.tokens.shape[1], tokens_per_camera)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.05)
    t0 = time.perf_counter()
    loss = torch.zeros(())
    for _ in range(steps):
        ix = torch.from_numpy(rng.integers(0, n_train, batch))
        pred = model(train.tokens[ix].float(), train.token_mask[ix], train.text_mask[ix])
        loss = nn.functional.mse_loss(pred, y_all[ix])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    train_s = time.perf_counter() - t0

    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, test.tokens.shape[0], 500):
            sl = slice(i, i + 500)
            preds.append(model(test.tokens[sl].float(), test.token_mask[sl], test.text_mask[sl]))
    p = (torch.cat(preds) * sd + mu).numpy()
    err_cm = np.linalg.norm(p - test_xy[:, 0], axis=-1) * 100.0
    nearest = np.linalg.norm(p[:, None] - test_xy, axis=-1).argmin(1)
    return ProbeResult(
        front_end=front_end,
        n_train=n_train,
        mean_err_cm=float(err_cm.mean()),
        median_err_cm=float(np.median(err_cm)),
        target_identified=float((nearest == 0).mean()),
        train_s=train_s,
        final_loss=float(loss.item()),
        n_params=sum(p.numel() for p in model.parameters()),
    )


def _default_encoder() -> str:
    """outputs/encoder/sim_siglip_r2 (the retrained encoder) if present, else sim_siglip."""
    r2 = ROOT / "outputs" / "encoder" / "sim_siglip_r2"
    return str(r2 if r2.exists() else r2.with_name("sim_siglip"))


def _int_list(s: str) -> list[int]:
    try:
        out = [int(v) for v in s.split(",") if v.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from e
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return out


def _front_ends(s: str) -> list[str]:
    out = [v.strip() for v in s.split(",") if v.strip()]
    bad = [v for v in out if v not in FRONT_ENDS]
    if bad or not out:
        raise argparse.ArgumentTypeError(f"unknown front end(s) {bad}; choose from {','.join(FRONT_ENDS)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default=None, help="encoder directory (default: sim_siglip_r2 if present)")
    ap.add_argument(
        "--sizes",
        type=_int_list,
        default=None,
        help="training-set sizes (default 100,1000,4000)",
    )
    ap.add_argument("--n-test", type=int, default=None, help="held-out test scenes (default 1000)")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per probe (default 1500)")
    ap.add_argument("--batch", type=int, default=128, help="probe training batch")
    ap.add_argument(
        "--front-ends", type=_front_ends, default=list(FRONT_ENDS), help=f"subset of {','.join(FRONT_ENDS)}"
    )
    # 1 thread by default: the machine is shared, and competing OpenMP threads spin.
    ap.add_argument("--threads", type=int, choices=(1, 2), default=1, help="torch threads")
    ap.add_argument("--seed", type=int, default=0, help="probe init / batch sampling seed")
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: defaults become sizes 50, 200 test scenes, 200 steps"
    )
    ap.add_argument("--out", type=Path, default=None, help=f"JSON path (default {RESULTS}; --quick: none)")
    args = ap.parse_args()
    # --quick changes the defaults only: explicit --sizes / --n-test / --steps still win.
    defaults = {"sizes": [50], "n_test": 200, "steps": 200} if args.quick else FULL_DEFAULTS
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.n_test < 1 or args.steps < 1:
        raise SystemExit("--n-test and --steps must be >= 1")
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    torch.set_num_threads(args.threads)

    from vla.encoders.config import EncoderConfig
    from vla.encoders.factory import build_encoder

    encoder_path = args.encoder or _default_encoder()
    if not Path(encoder_path).is_dir():
        raise SystemExit(
            f"--encoder: no encoder directory at {encoder_path} (run vla-pretrain-encoder first)"
        )
    enc = build_encoder(EncoderConfig(family="siglip", model=encoder_path, max_text_len=MAX_TEXT_LEN))
    n_train_max = max(args.sizes)
    train_seeds = range(0, n_train_max)
    test_seeds = range(TEST_SEED0, TEST_SEED0 + args.n_test)
    if n_train_max > TEST_SEED0:
        raise SystemExit(f"--sizes: at most {TEST_SEED0} training scenes (test seeds start there)")

    t0 = time.perf_counter()
    tr_scenes, te_scenes = render_scenes(train_seeds), render_scenes(test_seeds)
    render_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    train, test = encode_scenes(enc, tr_scenes), encode_scenes(enc, te_scenes)
    encode_s = time.perf_counter() - t0
    print(
        f"{n_train_max} train + {args.n_test} test scenes: render {render_s:.0f} s, encode {encode_s:.0f} s "
        f"({encoder_path}, {enc.tokens_per_image} tokens/camera, D={enc.dim}); "
        f"{args.steps} steps, torch threads {torch.get_num_threads()}",
        flush=True,
    )

    results: list[ProbeResult] = []
    hdr = f"{'front end':<16} {'n train':>7} {'mean cm':>8} {'median cm':>9} {'target id':>9} {'train s':>8}"
    print(hdr, flush=True)
    for fe in args.front_ends:
        for n in sorted(args.sizes):
            r = train_probe(
                fe,
                train,
                tr_scenes.cube_xy,
                n,
                test,
                te_scenes.cube_xy,
                enc.tokens_per_image,
                args.steps,
                batch=args.batch,
                seed=args.seed,
            )
            results.append(r)
            print(
                f"{fe:<16} {n:>7} {r.mean_err_cm:>8.2f} {r.median_err_cm:>9.2f} "
                f"{100 * r.target_identified:>8.1f}% {r.train_s:>8.0f}",
                flush=True,
            )
    chance = 1.0 / tr_scenes.cube_xy.shape[1]
    print(f"(target id chance = {100 * chance:.0f}%: {tr_scenes.cube_xy.shape[1]} cubes per scene)")

    res = {
        "settings": {
            "task": "pick_cube",
            "cameras": ["front", "wrist"],
            "image_size": 96,
            # relative to the repository root when inside it, so results from checkouts compare
            "encoder": os.path.relpath(encoder_path, ROOT)
            if Path(encoder_path).resolve().is_relative_to(ROOT)
            else encoder_path,
            "encoder_fingerprint": enc.fingerprint,
            "tokens_per_image": enc.tokens_per_image,
            "token_dim": enc.dim,
            "max_text_len": MAX_TEXT_LEN,
            "d_model": D_MODEL,
            "n_heads": N_HEADS,
            "n_queries": N_QUERIES,
            "steps": args.steps,
            "batch": args.batch,
            "lr": 1e-3,
            "sizes": sorted(args.sizes),
            "n_test": args.n_test,
            "train_seeds": [train_seeds.start, train_seeds.stop],
            "test_seeds": [test_seeds.start, test_seeds.stop],
            "probe_seed": args.seed,
            "quick": args.quick,
        },
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "render_s": render_s,
        "encode_s": encode_s,
        "chance_target_identified": chance,
        "results": [r.__dict__ for r in results],
    }
    out = args.out or (None if args.quick else RESULTS)
    if out is None:
        print("--quick: no JSON written (pass --out to keep it)")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
