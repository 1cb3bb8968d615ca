"""The auxiliary grounding loss's data: scenes labelled with the named cube's position (checked against
the MuJoCo model directly, through the instruction's colour word), batches that resume exactly, and a
`vla-train` run with the loss on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra_helpers import compose
from pipeline_helpers import IMAGE_SIZE, train_overrides

from vla.training.grounding import GroundedLoader, GroundingSet, GroundingSpec, render_grounding_scenes


@pytest.mark.parametrize("task", ["pick_cube", "stack_cubes"])
def test_labels_are_the_cube_the_instruction_names(task: str) -> None:
    import mujoco

    import sim

    spec = GroundingSpec(tasks=(task,), n_scenes=4, env={task: {"image_size": IMAGE_SIZE}}, seed=123)
    frames, instructions, xy = render_grounding_scenes(spec, ["front", "wrist"])
    assert frames["front"].shape == (4, IMAGE_SIZE, IMAGE_SIZE, 3) and frames["wrist"].dtype == np.uint8
    assert xy.shape == (4, 2)
    # Oracle: a fresh env reset with the same seed; the cube whose colour word the instruction names
    # first, its position read from MuJoCo's own body frame (not the task's helpers).
    env = sim.make(task, image_size=IMAGE_SIZE)
    try:
        for i in range(4):
            env.reset(seed=123 + i)
            task_obj = env.unwrapped.task
            words = instructions[i].split()
            named = [
                (words.index(colour), name)
                for name, colour in task_obj.colours.items()
                if name.startswith("cube") and colour in words
            ]
            assert named, instructions[i]
            cube = min(named)[1]
            m, d = env.unwrapped.model, env.unwrapped.data
            bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"obj/{cube}")
            assert bid >= 0, cube
            np.testing.assert_allclose(xy[i], d.xpos[bid][:2], atol=1e-5)
    finally:
        env.close()


def _scenes(n: int = 10) -> GroundingSet:
    g = torch.Generator().manual_seed(0)
    return GroundingSet(
        tokens=torch.randn(n, 6, 4, generator=g).half(),
        token_mask=torch.ones(n, 6, dtype=torch.bool),
        text_mask=torch.zeros(n, 6, dtype=torch.bool),
        target=torch.arange(2 * n, dtype=torch.float32).view(n, 2),
        target_mean=np.zeros(2),
        target_std=np.ones(2),
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
    idx = (b["ground_target"][:, 0] / 2).long()
    assert torch.equal(b["ground_tokens"], scenes.tokens[idx].float())
    # torchrun: each process keeps its slice of the same global draw.
    part = GroundedLoader(_Steps(), scenes, batch_size=8, seed=3, part=slice(4, 8))
    assert torch.equal(next(part.iter_from(2))["ground_target"], b["ground_target"][4:8])


def test_grounding_spec_refuses_bad_values() -> None:
    with pytest.raises(ValueError, match="n_scenes"):
        GroundingSpec(tasks=("pick_cube", "push_cube"), n_scenes=1)
    with pytest.raises(ValueError, match="'all'"):
        GroundingSpec(tasks=("all",), n_scenes=4)
    assert GroundingSpec(tasks=("a", "b", "c"), n_scenes=8).scenes_per_task() == [3, 3, 2]


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
    cfg = compose("train", [*base, "data.grounding.n_scenes=6", "train.steps=3", "train.log_every=1"])
    job = train_cli.to_job(cfg, tmp_path / "run")
    assert job.grounding is not None and job.grounding.tasks == ("pick_cube",)
    assert job.grounding.env["pick_cube"]["image_size"] == IMAGE_SIZE
    out = run_training(job)
    assert out.step == 3 and np.isfinite(out.last_loss)


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
