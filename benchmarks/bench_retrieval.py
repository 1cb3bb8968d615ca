"""Image -> instruction retrieval of the frozen encoders: top-1 among 32 on held-out scenes, with
the instructions worded as in training (the task templates) and as in the held-out phrasing set
(configs/phrasings/heldout.json: unseen verbs, nouns and colour words). Prints a table and writes
benchmarks/results/bench_retrieval.json.

    python -m benchmarks.bench_retrieval [--encoder outputs/encoder/sim_siglip] [--scenes 256] [--batch 32]

Scenes come from every task (seeds 3,000,000+, never used for pretraining or demos), front and
wrist cameras. For each batch of 32 scenes the candidates are the batch's own instructions; a hit
is the image's own instruction string (chance is reported beside it). The held-out wording of a
scene is its task's held-out template i mod n filled with the scene's own colours/side, then the
file's colour synonyms.

Encoders, in one run: `old` is the embedded default (the small SigLIP with its word-level
tokenizer, `vla-pretrain-encoder`); `new` is the sim vision tower aligned to the locked MiniLM text
tower (`vla-pretrain-encoder text_tower=minilm`, `vla.pretrain.lit`), scored with MiniLM's sentence
embeddings. A missing checkpoint is said so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "bench_retrieval.json"
ROOT = Path(__file__).resolve().parent.parent


def heldout_texts(pairs, camera: str) -> list[str]:
    from vla.evaluation.phrasings import load_phrasings

    phr = load_phrasings(ROOT / "configs" / "phrasings" / "heldout.json")
    out, count = [], {}
    for t in pairs.texts[camera]:
        k = count.get(t["task"], 0)
        count[t["task"]] = k + 1
        out.append(phr.render(phr.template(t["task"], k), t["fields"]))
    return out


@torch.no_grad()
def top1(
    model, tok, pairs, camera: str, texts: list[str], pre, max_len: int, batch: int
) -> tuple[float, float, float]:
    """(top-1, chance, share of [UNK] among the texts' word tokens)."""
    from vla.encoders.preprocess import to_pixels

    hits = n = 0
    chance = 0.0
    for s in range(0, len(texts) - batch + 1, batch):
        cand = texts[s : s + batch]
        ids = tok(cand, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")[
            "input_ids"
        ]
        img = model.get_image_features(pixel_values=to_pixels(pairs.images[camera][s : s + batch], pre))
        txt = model.get_text_features(input_ids=ids)
        img, txt = getattr(img, "pooler_output", img), getattr(txt, "pooler_output", txt)
        sim = torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T
        best = sim.argmax(1).tolist()
        hits += sum(cand[b] == cand[i] for i, b in enumerate(best))
        chance += sum(cand.count(t) / batch for t in cand)
        n += batch
    enc = tok(texts, add_special_tokens=False)["input_ids"]
    total = sum(len(e) for e in enc)
    unk = sum(e.count(tok.unk_token_id) for e in enc) if tok.unk_token_id is not None else 0
    return hits / n, chance / n, unk / max(total, 1)


@torch.no_grad()
def lit_rows(path: Path, pairs, batch: int) -> list[dict]:
    """The LiT encoder's rows: image embedding (vision pooled, projected) vs MiniLM sentence embedding."""
    from transformers import AutoModel, AutoTokenizer

    from vla.encoders.preprocess import ImagePreprocessing, to_pixels
    from vla.pretrain.lit import SentenceCache, image_embeddings

    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    size = int(model.config.vision_config.image_size)
    pre = ImagePreprocessing(size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    sentences = SentenceCache(model, tok, 32)
    rows = []
    for cam in pairs.images:
        for wording, texts in (("training templates", [t["instruction"] for t in pairs.texts[cam]]),
                               ("held-out phrasings", heldout_texts(pairs, cam))):  # fmt: skip
            hits = n = 0
            chance = 0.0
            for s in range(0, len(texts) - batch + 1, batch):
                cand = texts[s : s + batch]
                sim = (
                    image_embeddings(model, to_pixels(pairs.images[cam][s : s + batch], pre))
                    @ sentences(cand).T
                )
                hits += sum(cand[b] == cand[i] for i, b in enumerate(sim.argmax(1).tolist()))
                chance += sum(cand.count(t) / batch for t in cand)
                n += batch
            enc = tok(texts, add_special_tokens=False)["input_ids"]
            unk = sum(e.count(tok.unk_token_id) for e in enc) / max(sum(len(e) for e in enc), 1)
            rows.append({"encoder": "new (sim vision aligned to MiniLM)", "camera": cam, "wording": wording,
                         "top1": hits / n, "chance": chance / n, "unk_token_share": unk})  # fmt: skip
            print(
                f"new {cam:5s} {wording:18s}: top-1 {hits / n:.3f} (chance {chance / n:.3f}), [UNK] {unk:.0%}",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", type=Path, default=ROOT / "outputs" / "encoder" / "sim_siglip")
    ap.add_argument("--new-encoder", type=Path, default=ROOT / "outputs" / "encoder" / "sim_lit")
    ap.add_argument("--scenes", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoTokenizer, SiglipModel

    from vla.encoders.preprocess import ImagePreprocessing
    from vla.pretrain.sim_pairs import PairConfig, render_pairs

    if not (a.encoder / "config.json").is_file():
        raise SystemExit(f"{a.encoder}: no encoder (vla-pretrain-encoder or make demo makes it)")
    model = SiglipModel.from_pretrained(str(a.encoder), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(a.encoder), local_files_only=True)
    size = int(model.config.vision_config.image_size)
    # As vla-pretrain-encoder trained it (vla.pretrain.siglip.preprocessing): [-1, 1], bilinear.
    pre = ImagePreprocessing(size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear")
    max_len = int(model.config.text_config.max_position_embeddings)
    t0 = time.perf_counter()
    pairs = render_pairs(PairConfig(n_scenes=a.scenes, image_size=size, seed=3_000_000))
    rows = []
    for cam in pairs.images:
        for wording, texts in (("training templates", [t["instruction"] for t in pairs.texts[cam]]),
                               ("held-out phrasings", heldout_texts(pairs, cam))):  # fmt: skip
            acc, chance, unk = top1(model, tok, pairs, cam, texts, pre, max_len, a.batch)
            rows.append({"encoder": "old (word-level sim SigLIP)", "camera": cam, "wording": wording,
                         "top1": acc, "chance": chance, "unk_token_share": unk})  # fmt: skip
            print(
                f"old {cam:5s} {wording:18s}: top-1 {acc:.3f} (chance {chance:.3f}), [UNK] {unk:.0%}",
                flush=True,
            )
    if (a.new_encoder / "config.json").is_file():
        rows += lit_rows(a.new_encoder, pairs, a.batch)
    else:
        print(f"new: no checkpoint at {a.new_encoder} (vla-pretrain-encoder text_tower=minilm out_dir=...)")
    print("\n| encoder | camera | wording | top-1 of 32 | chance | [UNK] tokens |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['encoder']} | {r['camera']} | {r['wording']} | {r['top1']:.3f} | {r['chance']:.3f} | {r['unk_token_share']:.0%} |"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__}
    a.out.write_text(json.dumps({"rows": rows, "scenes": a.scenes, "batch": a.batch, "encoder": str(a.encoder),
                                 "seconds": time.perf_counter() - t0, **meta}, indent=2) + "\n")  # fmt: skip
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
