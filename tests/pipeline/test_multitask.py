"""Issue 18's interfaces: `vla-collect task=all` (one store, all four tasks), training on it with
per-task weights, `vla-eval task=all` (per task + overall) with `instructions_file=` (templates
per task, colour synonyms, results per template)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hydra_helpers import compose

from vla.data import ReplayBuffer

TASKS = ["pick_cube", "place_cube", "push_cube", "stack_cubes"]
PHRASINGS = {
    "pick_cube": ["raise the {c} cube", "grab the {c} block"],
    "place_cube": ["drop the {c} cube onto the {p} pad"],
    "push_cube": ["shove the {c} cube {s}"],
    "stack_cubes": ["set the {a} cube on the {b} one"],
    "colour_synonyms": {"red": "crimson", "blue": "navy", "green": "emerald", "yellow": "golden"},
}


@pytest.fixture(scope="module")
def all_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vla.cli import collect as collect_cli

    out = tmp_path_factory.mktemp("all") / "all.zarr"
    cfg = compose(
        "collect", ["task=all", "n_episodes=4", f"out={out}", "+task.env.image_size=32", "progress=false"]
    )
    assert collect_cli._body(cfg, []) == 0
    return out


def test_collect_all_writes_every_task_in_one_store(all_dataset: Path) -> None:
    rb = ReplayBuffer.open(all_dataset)
    assert [rb.episode_info(i)["task"] for i in range(rb.n_episodes)] == TASKS
    assert [rb.episode_info(i)["seed"] for i in range(4)] == [0, 0, 0, 0]  # each task's own seeds
    assert rb.meta.extra["tasks"] == TASKS and rb.meta.extra["task"] == "all"
    assert all(rb.episode_info(i)["success"] for i in range(4))
    assert rb.episode(0)["image_front"].shape[1:] == (32, 32, 3)  # task=all's env reached each task


def test_collect_all_equals_each_task_collected_alone(tmp_path: Path) -> None:
    """Oracle: every task collected on its own into its own store (plain `collect`); the joint store
    holds the same episodes, in task order, frame for frame."""
    import numpy as np

    from vla.collect import CollectConfig, collect
    from vla.collect_tasks import collect_tasks

    envs = {"pick_cube": {"image_size": 32}, "push_cube": {"image_size": 32, "max_steps": 60}}
    base = CollectConfig(task="pick_cube", n_episodes=3, out=str(tmp_path / "all.zarr"), progress=False)
    collect_tasks(base, envs)
    joint = ReplayBuffer.open(tmp_path / "all.zarr")
    alone = []
    for task, n in (("pick_cube", 2), ("push_cube", 1)):
        out = tmp_path / f"{task}.zarr"
        collect(
            CollectConfig(task=task, n_episodes=n, out=str(out), env_overrides=envs[task], progress=False)
        )
        rb = ReplayBuffer.open(out)
        alone += [(rb.episode(i), rb.instructions[i], rb.episode_info(i)) for i in range(rb.n_episodes)]
    assert joint.n_episodes == len(alone) == 3
    for i, (data, text, info) in enumerate(alone):
        got = joint.episode(i)
        assert sorted(got) == sorted(data)
        for key in data:
            np.testing.assert_array_equal(got[key], data[key], err_msg=f"episode {i} {key}")
        assert joint.instructions[i] == text and joint.episode_info(i) == info
    assert joint.meta.extra["episodes_per_task"] == {"pick_cube": 2, "push_cube": 1}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch left


def test_collect_all_refuses_a_task_that_does_not_fit_and_leaves_nothing(tmp_path: Path) -> None:
    from vla.collect import CollectConfig
    from vla.collect_tasks import collect_tasks

    envs = {"pick_cube": {"image_size": 32}, "push_cube": {"image_size": 32, "cameras": ["front"]}}
    cfg = CollectConfig(task="pick_cube", n_episodes=2, out=str(tmp_path / "all.zarr"), progress=False)
    with pytest.raises(ValueError, match=r"cannot add task 'push_cube': camera_names"):
        collect_tasks(cfg, envs)
    assert list(tmp_path.iterdir()) == []  # neither the store nor its staged copy


def test_train_and_eval_all_tasks_with_an_instructions_file(
    all_dataset: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    from vla.cli import eval as eval_cli
    from vla.cli import train as train_cli

    run = tmp_path / "run"
    overrides = [
        "experiment=debug",
        "task=all",
        f"dataset={all_dataset}",
        f"encoder.model={tiny_encoder_dir}",
    ]
    overrides += ["+task.env.image_size=32", "+task.env.max_steps=12", "+data.repeat_tasks.stack_cubes=2"]
    overrides += ["eval_episodes=1"]  # the end-of-training evaluation covers every task
    train_cli.run(compose("train", overrides), run)
    summary = json.loads((run / "train_summary.json").read_text())
    assert set(summary["eval"]) == {"success_rate", "min_task_success"}
    assert sorted(p.name for p in (run / "eval" / "step_4").iterdir() if p.is_dir()) == TASKS
    n_frames = ReplayBuffer.open(all_dataset).n_frames
    assert summary["n_windows"] > n_frames  # stack_cubes' windows twice
    phr = tmp_path / "phrasings.json"
    phr.write_text(json.dumps(PHRASINGS))
    out = tmp_path / "eval"
    args = [f"checkpoint={run}", "n_episodes=2", "max_steps=12", "n_videos=0", "progress=false"]
    eval_cli.run(
        compose("eval", [*args, f"instructions_file={phr}", f"out_dir={out}"])
    )  # the run's task: all
    res = json.loads((out / "eval.json").read_text())
    assert list(res["tasks"]) == TASKS and res["overall"]["n_episodes"] == 8
    assert (out / "eval.png").is_file()
    for t in TASKS:
        row = res["tasks"][t]
        assert set(row["per_template"]) == set(PHRASINGS[t][:2])
        assert sum(v["n"] for v in row["per_template"].values()) == 2
        for text in row["per_instruction"]:
            words = set(re.findall(r"[a-z]+", text))
            assert not words & set(PHRASINGS["colour_synonyms"]), text  # colour words replaced
            assert "{" not in text
    # The pick_cube report's episodes: template i mod 2, filled with that episode's colour.
    pick = json.loads((out / "pick_cube" / "eval.json").read_text())
    assert [e["template"] for e in pick["episodes"]] == PHRASINGS["pick_cube"]
    assert pick["episodes"][0]["instruction"].startswith("raise the ")
    # Sharded: each shard runs its share of every task; merge=true (task=all found from the dirs)
    # writes the same per-task and overall results as the run above.
    parts = tmp_path / "parts"
    for i in (1, 0):
        eval_cli.run(
            compose(
                "eval", [*args, f"instructions_file={phr}", "num_shards=2", f"shard={i}", f"out_dir={parts}"]
            )
        )
    assert not (parts / "eval.json").exists()
    merged = eval_cli.run(compose("eval", [*args, "num_shards=2", "merge=true", f"out_dir={parts}"]))
    assert json.loads((parts / "eval.json").read_text())["overall"] == merged["overall"] == res["overall"]
    for t in TASKS:
        a, b = merged["tasks"][t], res["tasks"][t]
        assert {k: a[k] for k in ("successes", "per_template", "per_instruction")} == {
            k: b[k] for k in ("successes", "per_template", "per_instruction")
        }, t
        whole = json.loads((out / t / "eval.json").read_text())["episodes"]
        joined = json.loads((parts / t / "eval.json").read_text())["episodes"]
        assert [(e["seed"], e["instruction"], e["success"]) for e in joined] == [
            (e["seed"], e["instruction"], e["success"]) for e in whole
        ], t


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"pick_cube": ["lift the {p} cube"]}, r"uses \['\{p\}'\]; pick_cube fills \['\{c\}'\]"),
        ({"open_drawer": ["open it"]}, "unknown task 'open_drawer'"),
        ({"pick_cube": []}, "non-empty list"),
        ({"push_cube": ["push the {c} cube {s}"]}, r"no templates for task\(s\) \['pick_cube'\]"),
        ({"pick_cube": ["x {c}"], "colour_synonyms": ["red"]}, "colour_synonyms must be an object"),
    ],
)
def test_instructions_file_errors_name_the_file_and_entry(tmp_path: Path, content: dict, match: str) -> None:
    from vla.evaluation.phrasings import load_phrasings

    p = tmp_path / "bad.json"
    p.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match):
        load_phrasings(p, ["pick_cube"])


def test_synonyms_replace_whole_words_only() -> None:
    from vla.evaluation.phrasings import apply_synonyms

    assert apply_synonyms("put the red cube on the reddish pad", {"red": "crimson"}) == (
        "put the crimson cube on the reddish pad"
    )
    assert apply_synonyms("blue on red", {"red": "blue", "blue": "red"}) == "red on blue"  # one pass


def test_heldout_phrasing_shorthand(debug_runs: dict[str, Path], tmp_path: Path) -> None:
    """phrasing=heldout evaluates with configs/phrasings/heldout.json (pick_cube's templates here)."""
    from vla.cli import eval as eval_cli

    out = tmp_path / "ev"
    args = [f"checkpoint={debug_runs['transformer']}", "n_episodes=4", "n_videos=0", "progress=false"]
    res = eval_cli.run(compose("eval", [*args, "phrasing=heldout", f"out_dir={out}"]))
    held = json.loads((Path(__file__).resolve().parents[2] / "configs/phrasings/heldout.json").read_text())
    assert set(res["per_template"]) == set(held["pick_cube"])
    assert all(t.split()[0] in {"hoist", "could", "snatch", "i"} for t in res["per_instruction"])
    with pytest.raises(ValueError, match=r"the named sets are \['heldout', 'heldout_words'\]"):
        eval_cli.run(compose("eval", [*args, "phrasing=mine"]))
