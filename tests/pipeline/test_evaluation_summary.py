"""One record and one summary for vla-eval and vla-deploy: the fields both write, computed once."""

from __future__ import annotations

import json
import math

import pytest

from vla.evaluation import EpisodeRecord, format_summary, summarize, wilson_interval
from vla.evaluation.simulator import EvalConfig


def _rec(i: int, success: bool, steps: int, misses: int = 0, instruction: str = "pick up the red cube"):
    return EpisodeRecord(
        episode=i, seed=100_000 + i, instruction=instruction, success=success, steps=steps,
        final_progress=1.0 if success else 0.4, misses=misses, chunks=3, gate_truncated=int(not success),
        latency_ms=[40.0, 50.0], extra={"grasp": {"close_step": 30}},
    )  # fmt: skip


def test_summary_counts_and_schema() -> None:
    recs = [_rec(0, True, 50, 1), _rec(1, False, 100, 3, "grab the blue block"), _rec(2, True, 60)]
    s = summarize(recs)
    assert (s["successes"], s["n_episodes"], s["misses"]) == (2, 3, 4)
    assert s["success_ci95"] == list(wilson_interval(2, 3))
    assert s["mean_episode_length"] == 70.0 and s["mean_success_length"] == 55.0
    assert s["per_instruction"]["pick up the red cube"] == {"n": 2, "successes": 2, "success_rate": 1.0}
    assert s["gate_truncated_total"] == 1 and s["n_chunks"] == 9
    assert math.isclose(s["chunk_latency_p50_s"], 0.045)
    ep = s["episodes"][1]
    assert ep["misses"] == 3 and ep["grasp"] == {"close_step": 30} and ep["latency_ms"]["n"] == 2
    json.dumps(s)  # JSON-able as written to eval.json / results.json
    text = format_summary(s)
    assert "success 2/3 = 67%" in text and "missed periods 4" in text and "0/1  grab the blue block" in text


def test_wilson_interval_edges() -> None:
    lo, hi = wilson_interval(40, 50)
    assert 0.66 < lo < 0.8 < hi < 0.9
    assert wilson_interval(0, 10)[0] == 0.0 and math.isclose(wilson_interval(10, 10)[1], 1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "later"}, "mode must be"),
        ({"smoothing": "wavelets"}, "smoothing must be"),
        ({"mode": "sync", "smoothing": "rtc"}, "needs mode='async'"),
    ],
)
def test_eval_config_takes_the_deployment_loop_options(kwargs: dict, match: str) -> None:
    assert EvalConfig(mode="async", smoothing="rtc").mode == "async"
    with pytest.raises(ValueError, match=match):
        EvalConfig(**kwargs)
