"""Instructions drawn from a file instead of the task's own templates (`vla-eval instructions_file=`).

File format (JSON): an object mapping task name to a list of templates with the task's
placeholders (`{c}` target colour, `{p}` pad colour, `{s}` side, `{a}`/`{b}` top/bottom cube
colours), plus an optional top-level `"colour_synonyms": {"red": "crimson", ...}` applied to the
colour words after formatting:

    {"pick_cube": ["raise the {c} cube", "grab the {c} block"],
     "push_cube": ["shove the {c} cube {s}"],
     "colour_synonyms": {"red": "crimson"}}

Episode i of a task gets template i mod n (every template equally often); results are reported
per template.
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sim

SYNONYMS_KEY = "colour_synonyms"


@dataclass(frozen=True)
class Phrasings:
    """Templates per task and colour-word substitutions, as read from an instructions file."""

    templates: dict[str, tuple[str, ...]]
    colour_synonyms: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def template(self, task: str, episode: int) -> str:
        """The template of episode `episode` of `task` (round robin over the task's templates)."""
        ts = self.templates[task]
        return ts[episode % len(ts)]

    def render(self, template: str, fields: dict[str, str]) -> str:
        """`template` filled with an episode's placeholder values, then colour synonyms applied."""
        text = template.format(**fields)
        return apply_synonyms(text, self.colour_synonyms)


def apply_synonyms(text: str, synonyms: dict[str, str]) -> str:
    """Replace whole colour words (`red` -> `crimson`, not inside `redder`), all in one pass."""
    if not synonyms:
        return text
    pattern = re.compile(
        r"\b(" + "|".join(re.escape(k) for k in sorted(synonyms, key=len, reverse=True)) + r")\b"
    )
    return pattern.sub(lambda m: synonyms[m.group(1)], text)


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def load_phrasings(path: str | Path, tasks: list[str] | None = None) -> Phrasings:
    """Read and check an instructions file; errors name the file and the entry.

    tasks: the tasks about to be evaluated: each must have templates in the file.
    """
    p = Path(path)
    try:
        raw: Any = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"instructions_file={p}: no such file") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{p}: expected a JSON object of task name -> list of templates")
    syn = raw.get(SYNONYMS_KEY, {})
    if not isinstance(syn, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in syn.items()
    ):
        raise ValueError(f"{p}: {SYNONYMS_KEY} must be an object of colour word -> replacement word")
    templates: dict[str, tuple[str, ...]] = {}
    for task, ts in raw.items():
        if task == SYNONYMS_KEY:
            continue
        if task not in sim.task_names():
            raise ValueError(f"{p}: unknown task {task!r}; tasks are {sim.task_names()}")
        fills = sim.task_class(task).instruction_placeholders
        if not isinstance(ts, list) or not ts or not all(isinstance(t, str) and t.strip() for t in ts):
            raise ValueError(f"{p}: {task}: expected a non-empty list of template strings")
        for t in ts:
            try:
                used = _placeholders(t)
            except ValueError as e:
                raise ValueError(f"{p}: {task}: template {t!r}: {e}") from None
            extra = used - fills
            if extra:
                raise ValueError(
                    f"{p}: {task}: template {t!r} uses {sorted('{' + x + '}' for x in extra)}; "
                    f"{task} fills {sorted('{' + x + '}' for x in fills)}"
                )
        templates[task] = tuple(ts)
    missing = [t for t in tasks or [] if t not in templates]
    if missing:
        raise ValueError(f"{p}: no templates for task(s) {missing} being evaluated (has {sorted(templates)})")
    return Phrasings(templates=templates, colour_synonyms=dict(syn), source=str(p))
