"""The auxiliary grounding loss's data: scenes labelled with the named cube's position and its goal's
(checked against the MuJoCo model directly, through the instruction's words), batches that resume
exactly, and a `vla-train` run with the loss on."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra_helpers import compose
from pipeline_helpers import IMAGE_SIZE, train_overrides
from safetensors.torch import load_file

from vla.training.grounding import GroundedLoader, GroundingSet, GroundingSpec, render_grounding_scenes
from vla.training.grounding_render import ROLLOUT_SEED_OFFSET

PUSH_DISTANCE = 0.08  # push_cube's default success distance [m], restated here as the oracle's own


def _body_xy(env: Any, body: str) -> np.ndarray:
    """A body's world (x, y) from MuJoCo's own frames."""
    import mujoco

    bid = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, body)
    assert bid >= 0, body
    return env.data.xpos[bid][:2]


def _named(colours: dict[str, str], words: list[str], prefix: str) -> list[str]:
    """Objects (names starting with `prefix`) whose colour the instruction names, in its word order."""
    hits = [(words.index(c), n) for n, c in colours.items() if n.startswith(prefix) and c in words]
    return [n for _, n in sorted(hits)]


@pytest.mark.parametrize("task", ["pick_cube", "place_cube", "push_cube", "stack_cubes"])
def test_labels_are_the_cube_the_instruction_names_and_its_goal(task: str) -> None:
    import sim

    spec = GroundingSpec(tasks=(task,), n_scenes=4, env={task: {"image_size": IMAGE_SIZE}}, seed=123)
    frames, instructions, xy = render_grounding_scenes(spec, ["front", "wrist"])
    assert frames["front"].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3) and frames["wrist"].dtype == np.uint8
    assert xy.shape == (4, 4)
    # Oracle: a fresh env reset with the same seed; objects found through the instruction's words
    # (the first cube colour named is the one to move; stack's second the cube to stack on, place's
    # pad colour the pad; push's "left" is +y), positions read from MuJoCo's own body frames (not
    # the task's helpers).
    env = sim.make(task, image_size=IMAGE_SIZE)
    try:
        for i in range(4):
            env.reset(seed=123 + i)
            task_obj = env.unwrapped.task
            words = instructions[i].split()
            body_xy = partial(_body_xy, env.unwrapped)
            named = partial(_named, task_obj.colours, words)
            cubes = named("cube")
            assert cubes, instructions[i]
            np.testing.assert_allclose(xy[i, :2], body_xy(f"obj/{cubes[0]}"), atol=1e-5)
            if task == "pick_cube":
                goal = body_xy(f"obj/{cubes[0]}")
            elif task == "stack_cubes":
                assert len(cubes) == 2, instructions[i]
                goal = body_xy(f"obj/{cubes[1]}")
            elif task == "place_cube":
                pads = named("pad")
                assert len(pads) == 1, instructions[i]
                goal = body_xy(f"pad/{pads[0]}")
            else:
                side = 1.0 if "left" in words else -1.0
                assert ("left" in words) != ("right" in words), instructions[i]
                goal = body_xy(f"obj/{cubes[0]}") + np.array([0.0, side * PUSH_DISTANCE])
            np.testing.assert_allclose(xy[i, 2:], goal, atol=1e-5)
    finally:
        env.close()


def _scenes(n: int = 10) -> GroundingSet:
    g = torch.Generator().manual_seed(0)
    return GroundingSet(
        tokens=torch.randn(n, 6, 4, generator=g).half(),
        token_mask=torch.ones(n, 6, dtype=torch.bool),
        text_mask=torch.zeros(n, 6, dtype=torch.bool),
        target=torch.arange(4 * n, dtype=torch.float32).view(n, 4),
        target_mean=np.zeros(4),
        target_std=np.ones(4),
    )


class _Steps:
    """A StepIterable whose batch k is {"step": k}."""

    def iter_from(self, step: int):
        while True:
            yield {"step": torch.tensor(step)}
            step += 1


def test_grounded_batches_are_a_function_of_seed_and_step() -> None:
    scenes = _scenes()
    a = GroundedLoader(_Steps(), scenes, batch_size=8, seed=3)
    it = a.iter_from(0)
    first = [next(it) for _ in range(5)]
    resumed = next(a.iter_from(3))
    assert torch.equal(resumed["ground_target"], first[3]["ground_target"])
    assert not torch.equal(first[0]["ground_target"], first[1]["ground_target"])
    b = first[2]
    assert b["ground_tokens"].dtype == torch.float32 and b["ground_tokens"].shape == (8, 6, 4)
    # Rows stay together: a scene's target is the row of its tokens.
    assert b["ground_target"].shape == (8, 2)  # dims=2: the cube's (x, y) only
    idx = (b["ground_target"][:, 0] / 4).long()
    assert torch.equal(b["ground_tokens"], scenes.tokens[idx].float())
    # dims=4: the same draw with the goal's columns too.
    both = next(GroundedLoader(_Steps(), scenes, batch_size=8, seed=3, dims=4).iter_from(2))
    assert torch.equal(both["ground_target"], scenes.target[idx])
    with pytest.raises(ValueError, match="dims"):
        GroundedLoader(_Steps(), scenes, batch_size=8, dims=5)
    # torchrun: each process keeps its slice of the same global draw.
    part = GroundedLoader(_Steps(), scenes, batch_size=8, seed=3, part=slice(4, 8))
    assert torch.equal(next(part.iter_from(2))["ground_target"], b["ground_target"][4:8])


def test_grounding_spec_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="n_scenes"):
        GroundingSpec(tasks=("pick_cube", "push_cube"), n_scenes=1)
    with pytest.raises(ValueError, match="'all'"):
        GroundingSpec(tasks=("all",), n_scenes=4)
    with pytest.raises(ValueError, match="rollouts"):
        GroundingSpec(tasks=("pick_cube",), n_scenes=4, rollouts=-1)
    with pytest.raises(ValueError, match="frames_per_rollout"):
        GroundingSpec(tasks=("pick_cube",), n_scenes=4, rollouts=2, frames_per_rollout=5, rollout_steps=4)


def test_rollout_frames_are_labelled_with_where_the_cube_is_then(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rollouts add `frames_per_rollout` mid-episode frames each, after every reset scene. Oracle: with
    every step in [1, rollout_steps] kept, the labels are the named cube's and pad's MuJoCo body
    positions after each step of an independent re-run of the scripted expert from the same seed;
    the set is the same rendered in 1 or 2 processes, and its reset scenes are those of the spec
    without rollouts."""
    import sim
    import vla.scene_workers

    monkeypatch.setattr(vla.scene_workers, "MIN_SCENES_PER_WORKER", 1)
    steps = 6
    spec = GroundingSpec(
        tasks=("place_cube",), n_scenes=2, env={"place_cube": {"image_size": IMAGE_SIZE}}, seed=41,
        rollouts=2, frames_per_rollout=steps, rollout_steps=steps,
    )  # fmt: skip
    frames, instructions, xy = render_grounding_scenes(spec, ["front", "wrist"], workers=1)
    assert xy.shape == (2 + 2 * steps, 4) and frames["wrist"].shape[0] == 2 + 2 * steps
    plain = render_grounding_scenes(
        GroundingSpec(tasks=spec.tasks, n_scenes=2, env=spec.env, seed=41), ["front"]
    )
    np.testing.assert_array_equal(frames["front"][:2], plain[0]["front"])
    np.testing.assert_array_equal(xy[:2], plain[2])
    two = render_grounding_scenes(spec, ["front", "wrist"], workers=2)
    assert two[1] == instructions
    np.testing.assert_array_equal(two[2], xy)
    np.testing.assert_array_equal(two[0]["wrist"], frames["wrist"])

    env = sim.make("place_cube", image_size=IMAGE_SIZE)
    try:
        for j in range(2):
            obs, _ = env.reset(seed=41 + ROLLOUT_SEED_OFFSET + j)
            expert = sim.make_expert(env)
            expert.reset()
            words = str(obs["instruction"]).split()
            cube = _named(env.unwrapped.task.colours, words, "cube")[0]
            pad = _named(env.unwrapped.task.colours, words, "pad")[0]
            start = _body_xy(env.unwrapped, f"obj/{cube}").copy()
            for k in range(steps):
                obs, *_ = env.step(expert.act(obs))
                row = 2 + j * steps + k
                assert instructions[row] == str(obs["instruction"])
                np.testing.assert_allclose(xy[row, :2], _body_xy(env.unwrapped, f"obj/{cube}"), atol=1e-5)
                np.testing.assert_allclose(xy[row, 2:], _body_xy(env.unwrapped, f"pad/{pad}"), atol=1e-5)
            # The frames show the arm moving: the last wrist view is not the first.
            first, last = frames["wrist"][2 + j * steps], frames["wrist"][2 + j * steps + steps - 1]
            assert np.abs(first.astype(int) - last.astype(int)).mean() > 1.0
            np.testing.assert_allclose(xy[2 + j * steps, :2], start, atol=0.01)
    finally:
        env.close()
    assert GroundingSpec(tasks=("a", "b", "c"), n_scenes=8).scenes_per_task() == [3, 3, 2]


def test_scenes_rendered_in_worker_processes_equal_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker renders a contiguous block; the joined set is the one-process set, scene for scene,
    including a block boundary inside a task's seeds and one between two tasks."""
    import vla.scene_workers

    monkeypatch.setattr(vla.scene_workers, "MIN_SCENES_PER_WORKER", 1)  # spawn workers for 5 scenes
    env = {t: {"image_size": IMAGE_SIZE} for t in ("pick_cube", "push_cube")}
    spec = GroundingSpec(tasks=("pick_cube", "push_cube"), n_scenes=5, env=env, seed=77)
    one = render_grounding_scenes(spec, ["front", "wrist"], workers=1)
    two = render_grounding_scenes(spec, ["front", "wrist"], workers=2)
    assert one[1] == two[1] and len(one[1]) == 5
    np.testing.assert_array_equal(one[2], two[2])
    for c in ("front", "wrist"):
        assert one[0][c].shape == (5, IMAGE_SIZE, IMAGE_SIZE, 3)
        np.testing.assert_array_equal(one[0][c], two[0][c])
    with pytest.raises(ValueError, match="workers"):
        render_grounding_scenes(spec, ["front"], workers=0)


def test_vla_train_with_the_grounding_loss(
    tmp_path: Path, tiny_dataset: Path, tiny_encoder_dir: Path
) -> None:
    from vla.cli import train as train_cli
    from vla.training.job import run_training

    base = [
        *train_overrides(tiny_dataset, tiny_encoder_dir),
        "policy=diffusion",
        "policy.aux_ground_weight=1.0",
    ]
    # The loss without its scenes is a one-line error naming the setting.
    with pytest.raises(ValueError, match=r"data\.grounding\.n_scenes"):
        run_training(
            train_cli.to_job(compose("train", [*base, "data.grounding.n_scenes=0"]), tmp_path / "none")
        )
    for dim in (2, 4):
        cfg = compose(
            "train",
            [*base, "data.grounding.n_scenes=6", "train.steps=3", f"policy.aux_ground_dim={dim}"],
        )
        job = train_cli.to_job(cfg, tmp_path / f"run{dim}")
        assert job.grounding is not None and job.grounding.tasks == ("pick_cube",)
        assert job.grounding.env["pick_cube"]["image_size"] == IMAGE_SIZE
        out = run_training(job)
        assert out.step == 3 and np.isfinite(out.last_loss)
        # The checkpoint's head regresses `dim` columns.
        weights = load_file(tmp_path / f"run{dim}" / "checkpoints" / "3" / "model.safetensors")
        last = sorted(k for k in weights if k.startswith("aux_ground.") and k.endswith(".weight"))[-1]
        assert weights[last].shape[0] == dim, last


def test_grounding_cache_gives_the_same_training(
    tmp_path: Path, tiny_dataset: Path, tiny_encoder_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs that load the encoded scenes from the cache train exactly as the run that rendered them;
    another scene set gets its own file; a damaged file is rebuilt, not trusted; scenes take the
    dataset's frame size."""
    from vla.cli import train as train_cli
    from vla.training.job import run_training

    cache = tmp_path / "cache"
    base = [
        *train_overrides(tiny_dataset, tiny_encoder_dir),
        "policy=diffusion",
        "policy.aux_ground_weight=1.0",
        "data.grounding.n_scenes=6",
        "train.steps=3",
        f"data.grounding.cache_dir={cache}",
    ]

    def train(name: str, *extra: str) -> tuple[float, str]:
        job = train_cli.to_job(compose("train", [*base, *extra]), tmp_path / name)
        assert job.grounding_cache == cache
        capsys.readouterr()
        loss = run_training(job).last_loss
        return loss, capsys.readouterr().out

    fresh, log = train("a")
    assert "grounding scenes (rendered" in log
    files = sorted(cache.glob("grounding-*.pt"))
    assert len(files) == 1
    again, log = train("b")
    assert "grounding scenes (from the cache" in log
    assert again == fresh
    files[0].write_bytes(b"not a torch file")
    rebuilt, log = train("c")
    assert "grounding scenes (rendered" in log and rebuilt == fresh
    _, log = train("d", "data.grounding.seed=777")
    assert "grounding scenes (rendered" in log and len(list(cache.glob("grounding-*.pt"))) == 2
    # A task config whose image size is not the dataset's: the scenes are rendered like the demos'
    # frames (32 px), which is the first run's key, so it loads that file and trains the same.
    resized, log = train("f", "task.env.image_size=48")
    assert f"rendered at the dataset's {IMAGE_SIZE} px" in log
    assert "grounding scenes (from the cache" in log and resized == fresh
    # No cache: nothing written anywhere under it.
    job = train_cli.to_job(compose("train", [*base, "data.grounding.cache_dir=null"]), tmp_path / "e")
    assert job.grounding_cache is None


def test_multitask_grounding_takes_each_tasks_own_env(tmp_path: Path) -> None:
    from vla.cli import train as train_cli
    from vla.cli.tasks import task_config

    cfg = compose("train", ["task=all", "+task.env.image_size=48", "data.grounding.n_scenes=40"])
    spec = train_cli.to_job(cfg, tmp_path / "run").grounding
    assert spec is not None and spec.tasks == ("pick_cube", "place_cube", "push_cube", "stack_cubes")
    assert spec.scenes_per_task() == [10, 10, 10, 10]
    for t in spec.tasks:
        own = task_config(t)["env"]
        assert spec.env[t] == {**own, "image_size": 48}, t
