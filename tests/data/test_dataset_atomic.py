"""Atomic append: a writer process killed (SIGKILL) mid-episode leaves every earlier episode intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from dataset_helpers import make_episode

from vla.cli.dataset import main as dataset_cli
from vla.data import ReplayBuffer, validate_store

HELPERS_DIR = Path(__file__).resolve().parent

# Episode i of every writer below: make_episode(i, LENGTHS(i), hw=16).
CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {helpers!r})
    import zarr
    from dataset_helpers import make_episode, make_meta
    from vla.data import ReplayBuffer

    path, n_before, stall_after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    length = lambda i: 5 + i if i < 3 else 40
    rb = ReplayBuffer.create(path, make_meta())
    for i in range(n_before):
        rb.add_episode(make_episode(i, length(i), hw=16), instruction=f"ep {{i}}", info={{"i": i}})
        print("committed", i, flush=True)
    if stall_after > 0:
        # Stall right after the N-th array write of the next episode, so the kill lands at a known phase.
        orig, count = zarr.Array.__setitem__, [0]
        def stalling(self, sel, value):
            orig(self, sel, value)
            count[0] += 1
            if count[0] == stall_after:
                print("stalled", flush=True)
                time.sleep(120)
        zarr.Array.__setitem__ = stalling
    i = n_before
    while True:  # stall_after == 0: keep appending until killed at a random moment
        rb.add_episode(make_episode(i, length(i), hw=16), instruction=f"ep {{i}}", info={{"i": i}})
        print("committed", i, flush=True)
        i += 1
    """
)


def _length(i: int) -> int:
    return 5 + i if i < 3 else 40


def _run_and_kill(tmp_path: Path, n_before: int, stall_after: int, kill_delay: float) -> tuple[Path, int]:
    """Start a writer, SIGKILL it while it appends; return (store path, last committed episode seen)."""
    script = tmp_path / "writer.py"
    script.write_text(CHILD.format(helpers=str(HELPERS_DIR)))
    path = tmp_path / "killed.zarr"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(path), str(n_before), str(stall_after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = -1
    deadline = time.monotonic() + 120
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"writer exited early: {proc.wait()} {proc.stderr.read()}")  # type: ignore[union-attr]
            if line.startswith("committed"):
                last = int(line.split()[1])
            if (stall_after > 0 and line.strip() == "stalled") or (stall_after == 0 and last >= 3):
                break
        time.sleep(kill_delay)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return path, last


def _check_committed_intact(path: Path, min_episodes: int) -> int:
    rb = ReplayBuffer.open(path)  # read-only open validates the structure
    assert rb.n_episodes >= min_episodes
    for i in range(rb.n_episodes):
        expected = make_episode(i, _length(i), hw=16)
        got = rb.episode(i)
        for k, v in expected.items():
            assert np.array_equal(got[k], v), (i, k)
        assert rb.instructions[i] == f"ep {i}" and rb.episode_info(i) == {"i": i}
    lay = validate_store(path, deep=True)
    assert lay.ok, [str(p) for p in lay.problems]
    return rb.n_episodes


def _append_after_crash(path: Path) -> None:
    rb = ReplayBuffer.open(path, mode="a")  # trims the uncommitted residue
    n = rb.n_episodes
    for k in rb.keys:
        assert rb.array(k).shape[0] == rb.n_frames
    assert not list(path.rglob("*.partial"))
    rb.add_episode(make_episode(n, _length(n), hw=16), instruction=f"ep {n}", info={"i": n})
    assert _check_committed_intact(path, n + 1) == n + 1
    assert dataset_cli(["validate", str(path)]) == 0


# Array writes of an append, in order: action, image_front, image_wrist, qvel, state, meta/episode_ends.
@pytest.mark.parametrize(
    ("n_before", "stall_after"),
    [(3, 1), (3, 3), (3, 6), (0, 2)],
    ids=["after-first-array", "mid-arrays", "after-episode-ends-before-commit", "first-episode"],
)
def test_kill_mid_episode_keeps_earlier_episodes(tmp_path: Path, n_before: int, stall_after: int) -> None:
    path, last = _run_and_kill(tmp_path, n_before, stall_after, kill_delay=0.0)
    assert last == n_before - 1
    notes = validate_store(path, deep=False).notes
    assert any("uncommitted" in n for n in notes), notes  # the kill really left a half-written episode
    assert _check_committed_intact(path, n_before) == n_before  # ... which readers do not see
    _append_after_crash(path)


def test_kill_at_random_moments(tmp_path: Path) -> None:
    """No stalling: the kill may land inside any file write of an append (or between appends)."""
    rng = np.random.default_rng(0)
    for round_ in range(2):
        sub = tmp_path / f"round{round_}"
        sub.mkdir()
        path, last = _run_and_kill(sub, n_before=3, stall_after=0, kill_delay=float(rng.uniform(0.0, 0.15)))
        n = _check_committed_intact(path, last + 1)
        _append_after_crash(path)
        assert n >= 4
