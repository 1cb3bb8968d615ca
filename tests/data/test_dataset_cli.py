"""`vla-dataset info` / `stats` / `--help`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vla.cli.dataset import main as dataset_cli
from vla.data import ReplayBuffer


def test_info_text_and_json(small_store: tuple[Path, list[dict]], capsys) -> None:
    path, _ = small_store
    assert dataset_cli(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "episodes    3   frames 18" in out and "fps 20" in out and "ur5e_2f85" in out
    assert "image_front      (N, 8, 8, 3)" in out and "uint8" in out
    assert "state            (N, 7)" in out and "float32" in out and "[rad|[0,1]]" in out
    assert "'pick up cube 1'" in out and "cameras     front, wrist" in out
    assert dataset_cli(["info", "--json", str(path)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["n_episodes"] == 3 and s["keys"]["qvel"] == {
        "shape": [6],
        "dtype": "float32",
        "chunks": [4096, 6],
        "codecs": ["BloscCodec", "Crc32cCodec"],
        "units": "rad/s",
        "description": "arm joint velocities",
    }
    assert s["instructions"] == ["pick up cube 0", "pick up cube 1", "pick up cube 2"]


def test_stats_command_saves_stats(small_store: tuple[Path, list[dict]], capsys) -> None:
    path, _ = small_store
    assert dataset_cli(["stats", str(path), "--keys", "state", "action"]) == 0
    assert "saved statistics of ['action', 'state']" in capsys.readouterr().out
    assert sorted(ReplayBuffer.open(path).load_stats()) == ["action", "state"]


def test_help_lists_subcommands(capsys) -> None:
    with pytest.raises(SystemExit) as ei:
        dataset_cli(["--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("info", "validate", "import-dp", "stats"):
        assert cmd in out


def test_console_script_runs(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    exe = Path(sys.executable).with_name("vla-dataset")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vla.cli.dataset"]
    r = subprocess.run([*cmd, "validate", "--quick", str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "OK:" in r.stdout
