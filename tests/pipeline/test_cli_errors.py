"""Bad input to every CLI: one clear line naming what is wrong, a non-zero exit status, no traceback.

Table-driven: each case is (command, arguments, expected exit status, words the message must
contain). The commands run in process through their console-script `main(argv)`, from a temporary
working directory outside the repository (so no case can lean on relative repo paths, and a failed
run that leaves directories behind would show up there).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import train_overrides

from vla.paths import REPO_ROOT

# (id, module under vla.cli, argv with {dataset} {ckpt} {run} {tmp} {encoder} placeholders, status, words)
CASES: list[tuple[str, str, str, int, list[str]]] = [
    # --- vla-eval
    (
        "eval-typo-key",
        "eval",
        "n_episode=2 checkpoint={ckpt}",
        2,
        ["unknown option 'n_episode'", "n_episodes"],
    ),
    (
        "eval-plus-typo",
        "eval",
        "+n_episode=2 checkpoint={ckpt}",
        2,
        ["unknown option 'n_episode'", "n_episodes"],
    ),
    ("eval-no-checkpoint", "eval", "", 2, ["missing required option checkpoint"]),
    ("eval-missing-checkpoint", "eval", "checkpoint={tmp}/nope", 2, ["nope", "checkpoint"]),
    ("eval-unknown-task", "eval", "task=nosuch checkpoint={ckpt}", 2, ["unknown task 'nosuch'", "push_cube"]),
    ("eval-plus-task", "eval", "+task=push_cube checkpoint={ckpt}", 2, ["config group", "task=<choice>"]),
    (
        "eval-safety-key",
        "eval",
        "safety=false checkpoint={ckpt}",
        2,
        ["unknown option 'safety'", "safety_gate"],
    ),
    (
        "eval-safety-config-missing",
        "eval",
        "checkpoint={ckpt} safety_config={tmp}/none.yaml n_episodes=1 n_videos=0 progress=false",
        2,
        ["none.yaml", "does not exist", "safety_gate=false"],
    ),
    ("eval-bad-mode", "eval", "checkpoint={ckpt} mode=turbo n_videos=0", 2, ["mode", "'turbo'"]),
    ("eval-rtc-sync", "eval", "checkpoint={ckpt} mode=sync smoothing=rtc n_videos=0", 2, ["rtc", "async"]),
    ("eval-zero-episodes", "eval", "checkpoint={ckpt} n_episodes=0", 2, ["n_episodes", ">= 1"]),
    (
        "eval-unset-mapping-field",
        "eval",
        "env_overrides.max_steps=3 checkpoint={ckpt}",
        2,
        ["+env_overrides.max_steps"],
    ),
    ("eval-flag", "eval", "checkpoint={ckpt} --foo", 2, ["unexpected argument '--foo'"]),
    ("embed-sweep", "embed", "-m dataset={dataset}", 2, ["-m", "vla-train, vla-collect and vla-eval"]),
    # --- vla-collect
    ("collect-typo-key", "collect", "n_episode=2", 2, ["unknown option 'n_episode'", "n_episodes"]),
    ("collect-plus-typo", "collect", "+n_episode=2", 2, ["unknown option 'n_episode'", "n_episodes"]),
    ("collect-unknown-task", "collect", "task=nosuch", 2, ["unknown task 'nosuch'", "pick_cube"]),
    ("collect-exists", "collect", "out={dataset}", 2, ["already exists", "resume=true", "overwrite=true"]),
    (
        "collect-resume-and-overwrite",
        "collect",
        "out={tmp}/x.zarr resume=true overwrite=true",
        2,
        ["pick one"],
    ),
    (
        "collect-resume-other-task",
        "collect",
        "task=push_cube out={dataset} resume=true n_episodes=5 +env_overrides.image_size=32",
        2,
        ["resume=true", "task 'pick_cube' != 'push_cube'"],
    ),
    (
        "collect-resume-already-full",
        "collect",
        "out={dataset} resume=true n_episodes=2 +env_overrides.image_size=32",
        2,
        ["already holds 3 episodes", "n_episodes"],
    ),
    ("collect-workers", "collect", "out={tmp}/w.zarr workers=0", 2, ["workers", ">= 1"]),
    ("collect-env-field", "collect", "out={tmp}/e.zarr +env_overrides.no_such_field=1", 2, ["no_such_field"]),
    # --- vla-train
    ("train-typo-key", "train", "train.stepz=5", 2, ["unknown option 'train.stepz'", "train.steps"]),
    ("train-unknown-policy", "train", "policy=nosuch", 2, ["unknown policy 'nosuch'", "diffusion"]),
    ("train-resume-not-run", "train", "resume={tmp}", 2, ["not a vla-train run directory"]),
    ("train-resume-group", "train", "resume={run} policy=transformer", 2, ["cannot change config group"]),
    (
        "train-missing-dataset",
        "train",
        "{train} dataset={tmp}/missing.zarr run_dir={tmp}/run_missing",
        2,
        ["missing.zarr"],
    ),
    (
        "train-grounding-workers",
        "train",
        "{train} dataset={dataset} data.grounding.workers=0 run_dir={tmp}/run_gw",
        2,
        ["data.grounding.workers", ">= 1"],
    ),
    (
        "train-grounding-rollouts",
        "train",
        "{train} dataset={dataset} data.grounding.n_scenes=8 data.grounding.rollouts=2 data.grounding.rollout_steps=3 run_dir={tmp}/run_gr",
        2,
        ["configs/train.yaml: data.grounding", "frames_per_rollout <= rollout_steps"],
    ),
    # --- vla-pretrain-encoder
    (
        "pretrain-render-workers",
        "pretrain_encoder",
        "render_workers=0 out_dir={tmp}/enc",
        2,
        ["pretrain_encoder.yaml", "render_workers", ">= 1"],
    ),
    # --- make demo (refused before its first stage)
    ("demo-eval-shards", "demo", "eval_shards=0 out_dir={tmp}/demo", 2, ["eval_shards", ">= 1"]),
    # --- vla-embed
    ("embed-no-dataset", "embed", "", 2, ["dataset="]),
    ("embed-missing-dataset", "embed", "dataset={tmp}/none.zarr encoder.model={encoder}", 2, ["none.zarr"]),
    (
        "embed-missing-encoder",
        "embed",
        "dataset={dataset} encoder.model={tmp}/enc",
        2,
        ["enc", "does not exist"],
    ),
    # --- vla-replay
    (
        "replay-negative-episode",
        "replay",
        "dataset={dataset} episode=-1 target=sim",
        2,
        ["episode=-1", "0..2"],
    ),
    ("replay-bad-target", "replay", "dataset={dataset} target=moon", 2, ["target", "'moon'"]),
    ("replay-no-dataset", "replay", "", 2, ["dataset="]),
    # --- vla-deploy
    ("deploy-typo-key", "deploy", "n_episode=2", 2, ["unknown option 'n_episode'", "n_episodes"]),
    ("deploy-unknown-robot", "deploy", "robot=marsrover", 2, ["unknown robot 'marsrover'", "sim"]),
    # --- vla-convert
    ("convert-no-src", "convert", "", 2, ["src=<source>"]),
    ("convert-unknown-mapping", "convert", "convert=nosuch", 2, ["unknown convert 'nosuch'", "ur5e_rosbag"]),
    ("convert-missing-src", "convert", "convert=dp_pusht src={tmp}/none out={tmp}/o.zarr", 2, ["none"]),
    # --- vla-dataset (argparse)
    ("dataset-info-missing", "dataset", "info {tmp}/none.zarr", 2, ["none.zarr"]),
    ("dataset-stats-missing-key", "dataset", "stats {dataset} --keys nosuch", 2, ["nosuch"]),
]


@pytest.fixture
def places(
    tmp_path: Path, tiny_dataset: Path, debug_runs: dict[str, Path], tiny_encoder_dir: Path
) -> dict[str, str]:
    work = tmp_path / "cwd"
    work.mkdir()
    return {
        "dataset": str(tiny_dataset),
        "ckpt": str(debug_runs["diffusion"]),
        "run": str(debug_runs["diffusion"]),
        "tmp": str(tmp_path),
        "encoder": str(tiny_encoder_dir),
        # the tiny-run overrides without the dataset (the case names its own)
        "train": " ".join(
            o for o in train_overrides(tiny_dataset, tiny_encoder_dir) if not o.startswith("dataset=")
        ),
        "cwd": str(work),
    }


def invoke(module: str, argv: list[str]) -> int:
    """Run `vla-<module>`'s console-script main in process; its exit status."""
    main = importlib.import_module(f"vla.cli.{module}").main
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    return int(code or 0)


@pytest.mark.parametrize(
    ("module", "args", "status", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_clear_line(
    module: str, args: str, status: int, words: list[str], places: dict[str, str], monkeypatch, capsys
) -> None:
    monkeypatch.chdir(places["cwd"])
    argv = args.format(**places).split()
    code = invoke(module, argv)
    out = capsys.readouterr()
    assert code == status, (code, out.err[-2000:], out.out[-2000:])
    assert "Traceback" not in out.err + out.out
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert lines, "nothing said on stderr"
    message = lines[-1]
    for w in words:
        assert w in message, (w, message)
    # Nothing left behind in the working directory by a refused command (no outputs/<timestamp>/ dirs).
    assert list(Path(places["cwd"]).iterdir()) == []


def test_table_covers_thirty_cases_across_the_clis() -> None:
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)
    assert {c[1] for c in CASES} >= {
        "eval",
        "collect",
        "train",
        "embed",
        "replay",
        "deploy",
        "convert",
        "dataset",
    }


def test_help_is_per_command(capsys) -> None:
    """Each --help names its own command, options with defaults, an example, and only its own groups."""
    expect = {
        "eval": ("vla-eval", "n_episodes: 50", "task", ("policy ",)),
        "collect": ("vla-collect", "n_episodes: 10", "task", ("encoder ", "policy ")),
        "train": ("vla-train", "batch_size: 64", "policy", ("robot ",)),
        "embed": ("vla-embed", "batch_size: 32", "encoder", ("task ", "policy ")),
        "deploy": ("vla-deploy", "n_episodes: 3", "robot", ("encoder ",)),
    }
    texts = {}
    for module, (prog, option, group, absent) in expect.items():
        assert invoke(module, ["--help"]) == 0
        text = capsys.readouterr().out
        texts[module] = text
        assert text.startswith(f"{prog}: ") and option in text and "Examples:" in text, module
        assert f"  {group} " in text.split("Options")[0], module
        assert not any(f"\n  {a}" in text.split("Options")[0] for a in absent), module
        assert "Hydra" not in text and "Powered by" not in text
    assert len(set(texts.values())) == len(texts)


def test_closed_pipe_is_quiet(tiny_dataset: Path, capsys, monkeypatch) -> None:
    """`vla-dataset info X | head -1`: the reader leaving is not an error."""
    from vla.cli.dataset import main

    class Closed:
        def write(self, s: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self) -> int:
            raise OSError("no descriptor")

    monkeypatch.setattr(sys, "stdout", Closed())
    code = main(["info", str(tiny_dataset), "--json"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err and "BrokenPipe" not in err


def _env() -> dict[str, str]:
    return {**os.environ, "VLA_PROGRESS_INTERVAL": "0", "PYTHONPATH": str(REPO_ROOT)}


def test_eval_runs_from_a_directory_outside_the_repo(debug_runs: dict[str, Path], tmp_path: Path) -> None:
    """Relative defaults (the safety config) must not depend on the working directory; `task=` and
    `instruction=` reach the episodes."""
    out = tmp_path / "eval"
    cmd = [
        sys.executable, "-m", "vla.cli.eval", f"checkpoint={debug_runs['diffusion']}", "n_episodes=1",
        "n_videos=0", f"out_dir={out}", "progress=false", "instruction=pick up the green cube",
    ]  # fmt: skip
    r = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((out / "eval.json").read_text())
    assert data["config"]["safety"] is True
    assert [e["instruction"] for e in data["episodes"]] == ["pick up the green cube"]
    # A normal run prints nothing a user cannot act on.
    noise = ("OpenGL_accelerate", "bos_token_id", "Loading weights", "Traceback", "UserWarning")
    assert not [n for n in noise if n in r.stdout + r.stderr], r.stdout + r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_sigint_during_collect_keeps_whole_episodes_and_resume_completes(
    tmp_path: Path, tiny_dataset: Path
) -> None:
    """Ctrl-C: one line saying what was kept, exit 130; `resume=true` then gives the dataset an
    uninterrupted run gives (the session's tiny_dataset: same task, seed, image size, 3 episodes)."""
    from vla.data import ReplayBuffer

    out = tmp_path / "c.zarr"
    args = [
        "task=pick_cube",
        "n_episodes=3",
        f"out={out}",
        "+env_overrides.image_size=32",
        "video_episodes=0",
    ]
    p = subprocess.Popen(
        [sys.executable, "-m", "vla.cli.collect", *args],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = ""
    deadline = time.monotonic() + 180
    assert p.stderr is not None
    while "1/3" not in seen and time.monotonic() < deadline and p.poll() is None:
        seen += p.stderr.readline()
    assert "1/3" in seen, seen
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err and "resume=true" in err, err
    kept = ReplayBuffer.open(out).n_episodes
    assert 1 <= kept < 3
    assert invoke("collect", [*args, "resume=true", "progress=false"]) == 0
    a, b = ReplayBuffer.open(out), ReplayBuffer.open(tiny_dataset)
    assert a.n_episodes == b.n_episodes == 3
    assert a.instructions == b.instructions
    for key in ("state", "action", "image_front"):
        np.testing.assert_array_equal(a.array(key)[: a.n_frames], b.array(key)[: b.n_frames], err_msg=key)
    shutil.rmtree(out)


def test_eval_task_choice_keeps_the_policys_observation_fields(tmp_path: Path) -> None:
    from vla.cli.eval import eval_task

    recorded = {"name": "pick_cube", "env": {"image_size": 32, "cameras": ["front"], "max_steps": 12}}
    chosen = {"name": "push_cube", "env": {"image_size": 96, "cameras": ["front", "wrist"], "max_steps": 150}}
    assert eval_task(recorded, None, tmp_path) == ("pick_cube", recorded["env"])
    name, env = eval_task(recorded, chosen, tmp_path)
    assert name == "push_cube" and env == {"image_size": 32, "cameras": ["front"], "max_steps": 150}
    with pytest.raises(ValueError, match="no task recorded"):
        eval_task({}, None, tmp_path)


def test_info_lists_a_damaged_group_instead_of_crashing(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    import zarr

    from vla.cli.dataset import main

    ds = tmp_path / "d.zarr"
    shutil.copytree(tiny_dataset, ds)
    zarr.open_group(str(ds), mode="a").create_group("embeddings")
    (ds / "embeddings" / "zarr.json").write_text("{not json")
    assert main(["info", str(ds)]) == 0
    out = capsys.readouterr()
    assert "unreadable group metadata" in out.out and "Traceback" not in out.err
    assert main(["validate", str(ds)]) == 1
    assert "embeddings/zarr.json" in capsys.readouterr().out
