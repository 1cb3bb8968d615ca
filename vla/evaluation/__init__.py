"""Evaluation: one episode record and summary (`records.py`) shared by `vla-eval` (closed loop in
the simulator, `simulator.py`), `vla-deploy` (over ROS 2) and the DAgger rounds to come."""

from vla.evaluation.records import (
    EpisodeRecord,
    format_summary,
    summarize,
    summarize_diagnostics,
    wilson_interval,
)

__all__ = ["EpisodeRecord", "format_summary", "summarize", "summarize_diagnostics", "wilson_interval"]
