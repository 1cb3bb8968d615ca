"""`vla-dataset view`: an episode becomes a rerun recording, headless as an .rrd file.

The oracle is the episode as it was written (the arrays handed to `add_episode`), read back out of
the .rrd with rerun's own chunk reader and checked by the `rerun rrd verify` command the wheel ships:
neither goes through the viewer module.
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from dataset_helpers import JOINTS

from vla.cli import dataset as cli
from vla.data.errors import DatasetError

rr = pytest.importorskip("rerun", reason="the rerun SDK is the optional extra 'viz' (make setup installs it)")
from rerun.chunk import RrdReader  # noqa: E402


@pytest.fixture(autouse=True)
def _headless(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI has no display; a developer's machine may: the tests are about the file either way.
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def _read_rrd(path: Path) -> dict[str, dict[str, dict[int, object]]]:
    """{entity: {column: {frame: value}}} for the time-indexed rows; static rows under frame -1."""
    out: dict[str, dict[str, dict[int, object]]] = defaultdict(lambda: defaultdict(dict))
    for chunk in RrdReader(path).stream().to_chunks():
        batch = chunk.to_record_batch()
        names = batch.schema.names
        frames = batch.column("frame").to_pylist() if "frame" in names else [-1] * batch.num_rows
        for name in names:
            if name.startswith("rerun.controls") or name in ("frame", "time", "log_time"):
                continue
            for f, v in zip(frames, batch.column(name).to_pylist()):
                out[chunk.entity_path][name][f] = v
    return out


def test_view_writes_cameras_joints_keys_and_instruction(small_store, tmp_path: Path) -> None:
    path, eps = small_store
    out = tmp_path / "views" / "ep1.rrd"
    assert cli.main(["view", str(path), "episode=1", f"out={out}"]) == 0
    assert out.is_file() and not list(out.parent.glob(".*.tmp"))  # atomic: nothing half-written left
    rerun_bin = Path(sys.executable).parent / "rerun"
    verify = subprocess.run([str(rerun_bin), "rrd", "verify", str(out)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr[-2000:]

    got = _read_rrd(out)
    ep = eps[1]
    T = len(ep["state"])
    for j, name in enumerate(JOINTS):
        for key in ("state", "action"):
            col = got[f"/joints/{name}/{key}"]["Scalars:scalars"]
            assert sorted(col) == list(range(T)), f"{name}/{key}: frames {sorted(col)}"
            np.testing.assert_array_equal([col[f][0] for f in range(T)], ep[key][:, j].astype(np.float64))
    qvel = got["/data/qvel"]["Scalars:scalars"]
    np.testing.assert_array_equal(np.array([qvel[f] for f in range(T)]), ep["qvel"].astype(np.float64))
    assert got["/data/qvel"]["SeriesLines:names"][-1] == [f"qvel[{i}]" for i in range(6)]
    for cam in ("front", "wrist"):
        buf = got[f"/cameras/{cam}"]["Image:buffer"]
        frames = np.stack(
            [np.asarray(buf[f], np.uint8).reshape(ep[f"image_{cam}"].shape[1:]) for f in range(T)]
        )
        np.testing.assert_array_equal(frames, ep[f"image_{cam}"])
    assert got["/instruction"]["TextDocument:text"][-1] == ["pick up cube 1"]


def test_headless_default_path_negative_episode_and_max_frames(
    small_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path, eps = small_store
    monkeypatch.chdir(tmp_path)
    assert cli.main(["view", str(path), "--episode", "-1", "--max-frames", "3"]) == 0
    out = tmp_path / "small_episode2.rrd"  # the last of 3 episodes, named after the store
    assert out.is_file()
    assert f"rerun {out}" in capsys.readouterr().out
    col = _read_rrd(out)["/joints/gripper/action"]["Scalars:scalars"]
    assert sorted(col) == [0, 1, 2]
    np.testing.assert_array_equal([col[f][0] for f in range(3)], eps[2]["action"][:3, 6].astype(np.float64))


def test_bad_episode_missing_sdk_and_missing_store_are_one_line_errors(
    small_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    path, _ = small_store
    assert cli.main(["view", str(path), "episode=3", f"out={tmp_path / 'x.rrd'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "episode=3 is out of range (the store has 3 episodes: 0..2)" in err and "\n" not in err
    assert not (tmp_path / "x.rrd").exists()
    assert cli.main(["view", str(tmp_path / "nope.zarr")]) == 2
    assert "nope.zarr" in capsys.readouterr().err

    from vla.data import viewer

    monkeypatch.setitem(sys.modules, "rerun", None)  # `import rerun` raises ImportError
    with pytest.raises(DatasetError, match=r"pip install -e '\.\[viz\]'"):
        viewer.view_episode(path, viewer.ViewOptions(out=str(tmp_path / "y.rrd")))
    assert not list(tmp_path.glob("*.rrd"))
