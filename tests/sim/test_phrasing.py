"""Training paraphrases (sim.phrasing) and the held-out evaluation phrasings
(configs/phrasings/heldout.json) are disjoint: no held-out instruction can be produced by the
training grammar or the fixed templates, and every held-out template has a word training never
shows. Paraphrase episodes are valid instructions of their task."""

from __future__ import annotations

import importlib
import itertools
import json
import re
from pathlib import Path

import pytest

import sim
from sim.phrasing import paraphrase_templates, training_vocabulary

TASKS = ["pick_cube", "place_cube", "push_cube", "stack_cubes"]
HELDOUT = Path(__file__).resolve().parents[2] / "configs" / "phrasings" / "heldout.json"
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


def _fills(task: str) -> list[dict[str, str]]:
    keys = {"pick_cube": "c", "place_cube": "cp", "push_cube": "cs", "stack_cubes": "ab"}[task]
    values = {"c": COLOURS, "p": COLOURS, "a": COLOURS, "b": COLOURS, "s": ["left", "right"]}
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(values[k] for k in keys))]


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.mark.parametrize("task", TASKS)
def test_heldout_phrasings_are_never_generated_for_training(task: str) -> None:
    held = json.loads(HELDOUT.read_text())
    synonyms = held["colour_synonyms"]
    fixed = importlib.import_module(f"sim.tasks.{task}").TEMPLATES
    train = {t.format(**f) for t in (*paraphrase_templates(task), *fixed) for f in _fills(task)}
    vocab = training_vocabulary() | {w for t in fixed for w in _words(t)} | set(COLOURS) | {"left", "right"}
    assert len(paraphrase_templates(task)) >= 40
    for template in held[task]:
        for f in _fills(task):
            text = template.format(**f)
            assert text not in train, text
            coloured = re.sub(r"\b(" + "|".join(synonyms) + r")\b", lambda m: synonyms[m.group(1)], text)
            assert coloured not in train
        assert _words(template.replace("{", " ").replace("}", " ")) - vocab - set("cpsab"), template
    assert not set(synonyms.values()) & vocab  # the held-out colour words are unseen too


@pytest.mark.parametrize("task", TASKS)
def test_paraphrase_episodes_draw_from_the_grammar(task: str) -> None:
    env = sim.make(task, render_images=False, instructions="paraphrase")
    try:
        seen = set()
        for seed in range(30):
            env.reset(seed=seed)
            t = env.unwrapped.task
            assert t.instruction in {t.format_instruction(p) for p in paraphrase_templates(task)}
            seen.add(t.instruction)
        assert len(seen) > 20
    finally:
        env.close()
    with pytest.raises(ValueError, match="instructions must be 'templates' or 'paraphrase'"):
        sim.make(task, render_images=False, instructions="free")


def test_heldout_words_is_heldout_without_the_colour_synonyms() -> None:
    """`phrasing=heldout_words`: the same unseen templates with the palette's own colour names, so the
    two sets separate unseen verbs/nouns from unseen colour words."""
    held = json.loads(HELDOUT.read_text())
    words = json.loads(HELDOUT.with_name("heldout_words.json").read_text())
    del held["colour_synonyms"]
    assert words == held
