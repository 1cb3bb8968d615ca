"""Unit tests of the runtime's parts: delay accounting, the queue, ensembling, the observation
buffer, the latency estimate and config validation."""

from __future__ import annotations

import numpy as np
import pytest

from vla.runtime import (
    ActionQueue,
    LatencyTracker,
    ObservationBuffer,
    QueuedChunk,
    RuntimeConfig,
    delay_steps,
)


@pytest.mark.parametrize(
    ("latency", "fraction", "expected"),
    [
        (0.0, 1.0, 0),  # instant: usable in the same period
        (0.049, 1.0, 0),  # ready before the period ends
        (0.051, 1.0, 1),
        (0.12, 1.0, 2),
        (0.0, 0.0, 0),
        (0.001, 0.0, 1),  # deadline at the tick: any latency costs a period
        (0.12, 0.0, 3),
        (0.1, 0.0, 2),  # exact multiples do not round up through float error
    ],
)
def test_delay_steps(latency: float, fraction: float, expected: int) -> None:
    assert delay_steps(latency, 0.05, fraction) == expected


def _chunk(cid: int, offset: int, values: list[float], start: int | None = None) -> QueuedChunk:
    a = np.array(values, np.float32)[:, None].repeat(2, axis=1)
    return QueuedChunk(cid, offset, a, offset if start is None else start, offset + len(values))


def test_queue_replaces_from_start_of_new_chunk() -> None:
    q = ActionQueue()
    q.install(_chunk(0, 0, [0, 1, 2, 3, 4, 5]))
    q.install(_chunk(1, 2, [10, 11, 12, 13, 14, 15], start=4))  # switches at step 4, keeps 2..3 of chunk 0
    got = [q.action_at(k) for k in range(9)]
    assert [g[1] for g in got[:8]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [float(g[0][0]) for g in got[:8]] == [0, 1, 2, 3, 12, 13, 14, 15]
    assert got[8] is None
    assert q.remaining(3) == 5
    np.testing.assert_array_equal(q.committed(2, 3)[:, 0], [2, 3, 12])
    assert q.committed(8, 2) is None


def test_queue_temporal_ensembling_weights() -> None:
    decay = 0.5
    q = ActionQueue(ensemble_decay=decay)
    q.install(_chunk(0, 0, [0, 1, 2, 3]))
    q.install(_chunk(1, 2, [10, 11, 12, 13]))
    action, cid, idx = q.action_at(3)
    w = np.exp(-decay * np.arange(2))  # rank 0 = oldest chunk (ACT)
    assert action[0] == pytest.approx((w[0] * 3 + w[1] * 11) / w.sum(), rel=1e-6)
    assert (cid, idx) == (1, 1)
    assert q.action_at(1)[0][0] == 1.0  # only the old chunk covers step 1
    assert q.action_at(5)[0][0] == 13.0  # only the new one covers step 5


def test_obs_buffer_pads_by_repetition_and_stacks() -> None:
    buf = ObservationBuffer(3)
    buf.push({"state": np.full(7, 1.0, np.float32), "instruction": "pick"})
    snap = buf.snapshot(step=0, prev_action=None)
    assert snap["state"].shape == (3, 7) and np.all(snap["state"] == 1.0)
    assert snap["instruction"] == "pick" and snap["step"] == 0 and snap["prev_action"] is None
    for v in (2.0, 3.0, 4.0):
        buf.push({"state": np.full(7, v, np.float32), "instruction": "pick"})
    snap = buf.snapshot(step=3, prev_action=np.zeros(7, np.float32))
    np.testing.assert_array_equal(snap["state"][:, 0], [2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="keys changed"):
        buf.push({"state": np.zeros(7), "qvel": np.zeros(6), "instruction": "pick"})
    with pytest.raises(ValueError, match="'state'"):
        ObservationBuffer(1).push({"qvel": np.zeros(6)})


def test_latency_tracker_is_conservative() -> None:
    t = LatencyTracker(window=10, quantile=0.9, ema_alpha=0.3)
    assert t.estimate() == 0.0
    for x in [0.05] * 9 + [0.2]:
        t.add(x)
    # A single spike raises the estimate (p90 / EMA), so the next request starts earlier.
    assert t.estimate() >= 0.09


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "blocking"}, "mode"),
        ({"smoothing": "rtc", "mode": "sync"}, "rtc"),
        ({"n_action_steps": 0}, "n_action_steps"),
        ({"latency_quantile": 0.0}, "latency_quantile"),
        ({"hold": "zero"}, "hold"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RuntimeConfig(**kwargs)
