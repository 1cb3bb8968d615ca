"""Instruction paraphrases for training (`TaskConfig.instructions="paraphrase"`).

Each task's paraphrase set is a small grammar expanded: verbs x object nouns x sentence patterns,
with the task's placeholders left in (`{c}` target colour, `{p}` pad colour, `{s}` side, `{a}`/`{b}`
top/bottom cube colours; `Task.format_instruction` fills them). The default `"templates"` keeps the
task's four or so fixed templates (the demos' instructions are unchanged).

The held-out evaluation phrasings (`configs/phrasings/heldout.json`, `vla-eval phrasing=heldout`)
use verbs, nouns and colour words that appear nowhere here (`tests/sim/test_phrasing.py` checks the
two sets are disjoint), so they measure generalization to unseen wording.
"""

from __future__ import annotations

import itertools
from functools import cache

NOUNS = ("cube", "block", "box")
# task -> (verbs, patterns with {v} verb and {n} noun besides the task's placeholders)
_GRAMMAR: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pick_cube": (
        ("pick up", "lift", "grab", "take", "get", "raise"),
        ("{v} the {c} {n}", "please {v} the {c} {n}", "{v} the {n} that is {c}", "can you {v} the {c} {n}"),
    ),
    "place_cube": (
        ("put", "place", "set", "move", "drop"),
        ("{v} the {c} {n} on the {p} pad", "{v} the {c} {n} onto the {p} target",
         "{v} the {c} {n} down on the {p} pad", "please {v} the {c} {n} on the {p} mat"),
    ),
    "push_cube": (
        ("push", "slide", "shove", "nudge"),
        ("{v} the {c} {n} to the {s}", "{v} the {c} {n} {s}", "{v} the {c} {n} towards the {s}",
         "please {v} the {c} {n} over to the {s}"),
    ),
    "stack_cubes": (
        ("stack", "put", "place", "set"),
        ("{v} the {a} {n} on the {b} {n}", "{v} the {a} {n} on top of the {b} {n}",
         "{v} the {a} {n} onto the {b} one", "please {v} the {a} {n} on the {b} {n}"),
    ),
}  # fmt: skip


@cache
def paraphrase_templates(task: str) -> tuple[str, ...]:
    """Every training paraphrase template of `task`, in a fixed order (verbs x nouns x patterns)."""
    if task not in _GRAMMAR:
        raise ValueError(f"no paraphrase grammar for task {task!r}; tasks: {sorted(_GRAMMAR)}")
    verbs, patterns = _GRAMMAR[task]
    out = []
    for pattern, verb, noun in itertools.product(patterns, verbs, NOUNS):
        # Fill {v} and {n} only; the task's own placeholders stay for format_instruction.
        out.append(pattern.replace("{v}", verb).replace("{n}", noun))
    return tuple(dict.fromkeys(out))


def training_vocabulary() -> set[str]:
    """Every word a training instruction can contain (paraphrases and the fixed templates' words are
    checked against the held-out set by the tests), besides colour names and sides."""
    words: set[str] = set()
    for task in _GRAMMAR:
        for t in paraphrase_templates(task):
            words |= {w for w in t.replace("{", " {").split() if not w.startswith("{")}
    return words
