"""Each task's `instruction_fields` are the values its sampled instruction was written with: one of
the task's own templates, formatted with them, is the instruction (over 20 seeds per task)."""

from __future__ import annotations

import importlib

import pytest

import sim

TASKS = ["pick_cube", "place_cube", "push_cube", "stack_cubes"]


@pytest.mark.parametrize("name", TASKS)
def test_fields_reproduce_the_instruction(name: str) -> None:
    templates = importlib.import_module(f"sim.tasks.{name}").TEMPLATES
    env = sim.make(name, render_images=False)
    try:
        seen = set()
        for seed in range(20):
            env.reset(seed=seed)
            task = env.unwrapped.task
            assert task.instruction in {task.format_instruction(t) for t in templates}, (
                seed,
                task.instruction,
            )
            colours = set(task.colours.values())
            for key, value in task.instruction_fields.items():
                assert value in ({"left", "right"} if key == "s" else colours), (key, value)
            # The declared placeholders (what instruction files are checked against) are the ones filled.
            assert set(task.instruction_fields) == set(sim.task_class(name).instruction_placeholders)
            seen.add(tuple(sorted(task.instruction_fields.items())))
        assert len(seen) > 5  # the values vary with the seed
        with pytest.raises(ValueError, match=r"uses \{q\}"):
            task.format_instruction("move the {q} cube")
    finally:
        env.close()
