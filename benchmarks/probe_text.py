"""Text probe: what can a policy read from the frozen MiniLM text tower about an unseen instruction?

    python -m benchmarks.probe_text [--steps 1500] [--seeds 3] [--threads 1] [--quick]

A cheap proxy for how the policy's instruction reader generalizes to the held-out phrasings,
without rolling out a single episode:

1. Texts: training = every `sim.phrasing` paraphrase template and every fixed task template of the
   four tasks, filled with every colour / side combination (what the training grammar can say);
   test = the held-out templates (configs/phrasings/heldout.json) filled the same way, once with
   the palette's colour names (`heldout_words`: unseen verbs, nouns, word orders) and once with the
   file's colour synonyms (`heldout`: also unseen colour words, "crimson" for red).
2. Features: the packaged all-MiniLM-L6-v2 token states (the `lit` encoder's text side: its text
   projection is the frozen identity), max 24 tokens as configs/encoder/sim_lit.yaml.
3. Readers: the two ways the spatial-softmax front end reads text (`PolicyConfig.text_pool`):
   "mean" (masked mean of the token states) and "attention" (the real
   `policies.layers.TextAttentionPool`, 4 queries), each followed by the same LayerNorm + MLP
   (384 -> 256 -> 4 + 6 + 9 logits) classifying the task, the first referent's colour and the
   second referent (pad / bottom cube colour, push side, or none). AdamW lr 1e-3, batch 128.
4. Metrics on the test texts: accuracy of each factor and "all three right", per task, averaged
   over `--seeds` trainings.
5. Lexicon: for each held-out colour synonym, the palette colour whose MiniLM sentence embedding of
   "the {colour} cube" is nearest: whether the text tower itself knows that crimson is red.

Prints tables and writes benchmarks/results/probe_text.json. About 2 minutes at the defaults on
one CPU thread; `--quick` is a 20-second smoke run.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).resolve().parent / "results" / "probe_text.json"
ROOT = Path(__file__).resolve().parent.parent
TASKS = ("pick_cube", "place_cube", "push_cube", "stack_cubes")
SIDES = ("left", "right")
MAX_TEXT_LEN = 24  # configs/encoder/sim_lit.yaml


def fills(task: str, colours: list[str]) -> list[dict[str, str]]:
    """Every placeholder assignment of `task` (distinct colours where two are named)."""
    if task == "pick_cube":
        return [{"c": c} for c in colours]
    if task == "push_cube":
        return [{"c": c, "s": s} for c in colours for s in SIDES]
    first, second = ("c", "p") if task == "place_cube" else ("a", "b")
    return [{first: x, second: y} for x, y in itertools.permutations(colours, 2)]


def label(task: str, f: dict[str, str], colours: list[str]) -> tuple[int, int, int]:
    """(task index, first referent's colour index, second referent: colour, side or none)."""
    seconds = [*colours, *SIDES, "none"]
    return (
        TASKS.index(task),
        colours.index(f.get("c", f.get("a"))),
        seconds.index(f.get("p", f.get("b", f.get("s", "none")))),
    )


def texts(heldout: bool, synonyms: bool, colours: list[str]) -> tuple[list[str], list[tuple[int, int, int]]]:
    from sim.phrasing import paraphrase_templates
    from vla.evaluation.phrasings import load_phrasings

    phr = load_phrasings(ROOT / "configs" / "phrasings" / "heldout.json") if heldout else None
    out, labels = [], []
    for task in TASKS:
        if phr is not None:
            templates = phr.templates[task]
        else:
            fixed = importlib.import_module(f"sim.tasks.{task}").TEMPLATES
            templates = tuple(dict.fromkeys((*paraphrase_templates(task), *fixed)))
        for t in templates:
            for f in fills(task, colours):
                text = t.format(**f)
                if phr is not None and synonyms:
                    text = phr.render(t, f)
                out.append(text)
                labels.append(label(task, f, colours))
    return out, labels


class Reader(nn.Module):
    """Text tokens (B, L, D) + mask -> logits (B, 4 + n_colours + n_second) via `text_pool`."""

    def __init__(self, text_pool: str, dim: int, n_out: int) -> None:
        super().__init__()
        from policies.layers import TextAttentionPool

        self.pool = TextAttentionPool(dim, 4) if text_pool == "attention" else None
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 256), nn.GELU(), nn.Linear(256, n_out))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pool is None:  # as policies.layers.SpatialKeypoints with text_pool="mean"
            w = mask.unsqueeze(-1).to(tokens.dtype)
            text = (tokens * w).sum(1) / w.sum(1).clamp_min(1.0)
        else:
            text = self.pool(tokens, mask)
        return self.mlp(self.norm(text))


def encode(tower, strings: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    toks, masks = [], []
    for s in range(0, len(strings), 256):
        b = tower.tokenizer(strings[s : s + 256], padding="max_length", truncation=True,
                            max_length=MAX_TEXT_LEN, return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            h = tower.bert(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        toks.append(h)
        masks.append(b["attention_mask"].bool())
    return torch.cat(toks), torch.cat(masks)


def fit_and_score(text_pool: str, train, test_sets, splits, steps: int, seed: int) -> dict[str, dict]:
    x, m, y = train
    torch.manual_seed(seed)
    net = Reader(text_pool, x.shape[-1], splits[-1][1])
    opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-2)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randint(0, len(x), (128,), generator=g)
        out = net(x[i], m[i])
        loss = sum(nn.functional.cross_entropy(out[:, a:b], y[i, k]) for k, (a, b) in enumerate(splits))
        opt.zero_grad()
        loss.backward()
        opt.step()
    scores = {}
    with torch.no_grad():
        for name, (tx, tm, ty) in test_sets.items():
            out = net(tx, tm)
            ok = torch.stack([out[:, a:b].argmax(1) == ty[:, k] for k, (a, b) in enumerate(splits)], 1)
            row = {"task": ok[:, 0], "first": ok[:, 1], "second": ok[:, 2], "all": ok.all(1)}
            res = {k: float(v.float().mean()) for k, v in row.items()}
            res["all_per_task"] = {
                t: float(ok.all(1)[ty[:, 0] == j].float().mean()) for j, t in enumerate(TASKS)
            }
            scores[name] = res
    return scores


def lexicon(tower, colours: list[str]) -> list[dict]:
    phr = json.loads((ROOT / "configs" / "phrasings" / "heldout.json").read_text())
    rows = []
    pal = tower.encode([f"the {c} cube" for c in colours]).pooled
    for colour, word in phr["colour_synonyms"].items():
        sim = (tower.encode([f"the {word} cube"]).pooled @ pal.T)[0]
        j = int(sim.argmax())
        rows.append({"word": word, "means": colour, "nearest": colours[j],
                     "cos_nearest": float(sim[j]), "cos_meant": float(sim[colours.index(colour)])})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1500, help="training steps per reader")
    ap.add_argument("--seeds", type=int, default=3, help="trainings per reader (averaged)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="200 steps, 1 seed: a smoke run")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    if a.quick:
        a.steps, a.seeds = 200, 1
    torch.set_num_threads(a.threads)
    import sim  # noqa: F401  (before anything imports mujoco)
    from sim.scene import PALETTE
    from vla.encoders.text_tower import MiniLMTextTower

    t0 = time.perf_counter()
    colours = list(PALETTE.colours)
    tower = MiniLMTextTower(max_len=MAX_TEXT_LEN)
    splits = [(0, 4), (4, 4 + len(colours)), (4 + len(colours), 4 + 2 * len(colours) + len(SIDES) + 1)]

    def prepared(heldout: bool, synonyms: bool):
        s, lab = texts(heldout, synonyms, colours)
        return (*encode(tower, s), torch.tensor(lab))

    train = prepared(False, False)
    tests = {"heldout_words": prepared(True, False), "heldout": prepared(True, True)}
    rows = []
    for text_pool in ("mean", "attention"):
        runs = [fit_and_score(text_pool, train, tests, splits, a.steps, seed) for seed in range(a.seeds)]
        for name in tests:
            r = {k: sum(run[name][k] for run in runs) / len(runs) for k in ("task", "first", "second", "all")}
            per = {t: sum(run[name]["all_per_task"][t] for run in runs) / len(runs) for t in TASKS}
            rows.append({"text_pool": text_pool, "test": name, **r, "all_per_task": per})
    lex = lexicon(tower, colours)
    print(f"train texts {len(train[0])}, held-out texts {len(tests['heldout'][0])} per set, "
          f"{a.steps} steps x {a.seeds} seeds\n")  # fmt: skip
    print(
        "| text_pool | test set | task | first referent | second referent | all three | "
        + " | ".join(TASKS)
        + " |"
    )
    print("|---" * (6 + len(TASKS)) + "|")
    for r in rows:
        per = " | ".join(f"{r['all_per_task'][t]:.2f}" for t in TASKS)
        print(
            f"| {r['text_pool']} | {r['test']} | {r['task']:.2f} | {r['first']:.2f} | {r['second']:.2f} | {r['all']:.2f} | {per} |"
        )
    print(
        "\n| held-out colour word | means | nearest palette colour (MiniLM) | cos nearest | cos meant |\n|---|---|---|---|---|"
    )
    for r in lex:
        print(
            f"| {r['word']} | {r['means']} | {r['nearest']} | {r['cos_nearest']:.2f} | {r['cos_meant']:.2f} |"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__}
    a.out.write_text(json.dumps({"rows": rows, "lexicon": lex, "steps": a.steps, "seeds": a.seeds,
                                 "n_train_texts": len(train[0]), "seconds": time.perf_counter() - t0,
                                 **meta}, indent=2) + "\n")  # fmt: skip
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
