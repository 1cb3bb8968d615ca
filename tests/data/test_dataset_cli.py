"""`vla-dataset info` / `stats` / `--help`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def _read_only_message(path: Path) -> str:
    """The whole of stderr: one line (the prefix before `error:` is the CLI's)."""
    return (
        rf"^(vla-dataset: )?error: {re.escape(str(path))}: cannot write stats/ \(read-only: .*\); copy the store to writable storage "
        r"and run `vla-dataset stats` on the copy \(training computes its statistics without writing them\)\n$"
    )


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file modes")
def test_stats_on_read_only_store_is_one_line(small_store: tuple[Path, list[dict]], tmp_path, capsys) -> None:
    import shutil

    path, _ = small_store
    ro = tmp_path / "read_only.zarr"
    shutil.copytree(path, ro)
    modes = {p: p.stat().st_mode for p in [ro, *ro.rglob("*")]}
    for p, m in modes.items():
        p.chmod(m & ~0o222)
    try:
        assert dataset_cli(["stats", str(ro)]) == 2
        err = capsys.readouterr().err
        assert re.match(_read_only_message(ro), err), err
    finally:
        for p, m in modes.items():
            p.chmod(m)


def test_stats_on_read_only_file_system_is_one_line(
    small_store: tuple[Path, list[dict]], monkeypatch, capsys
) -> None:
    """The same refusal where the file system refuses writes (EROFS), also when running as root."""
    import errno

    import zarr

    path, _ = small_store

    async def refuse(self, key, value):
        raise OSError(errno.EROFS, "Read-only file system", f"{self.root}/{key}")

    monkeypatch.setattr(zarr.storage.LocalStore, "set", refuse)
    assert dataset_cli(["stats", str(path)]) == 2
    err = capsys.readouterr().err
    assert re.match(_read_only_message(path), err), err


def test_stats_on_non_finite_values_is_one_line(small_store: tuple[Path, list[dict]], capsys) -> None:
    import zarr

    path, _ = small_store
    zarr.open_array(str(path / "data/action"), mode="r+")[7, 2] = np.nan
    assert dataset_cli(["stats", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}/data/action: non-finite value (nan) at frame 7 (step 2 of episode 1)" in err
    assert err.count("\n") == 1
    assert not (path / "stats").exists()
