"""The conversion report: per episode, per stream, what was kept, dropped or resampled."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vla.convert.align import AlignmentStats


@dataclass
class EpisodeReport:
    """One output episode.

    source: where it came from (bag directory, HDF5 file, LeRobot episode index).
    n_frames: frames written; keys: {key: per-frame shape} written; streams: one row per input stream.
    duration_s: time from the first to the last frame ((n_frames - 1) / fps on a fixed-rate clock).
    """

    source: str
    n_frames: int
    instruction: str
    t_start_s: float = 0.0
    duration_s: float = 0.0
    keys: dict[str, list[int]] = field(default_factory=dict)
    streams: list[AlignmentStats] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "streams"}
        d["streams"] = [s.to_json() for s in self.streams]
        return d


@dataclass
class ConvertReport:
    """Everything `vla-convert` did (or, with ``dry_run``, would do)."""

    format: str
    src: str
    out: str
    fps: float
    dry_run: bool = False
    episodes: list[EpisodeReport] = field(default_factory=list)
    ignored_topics: dict[str, int] = field(default_factory=dict)  # recorded but not mapped -> count
    notes: list[str] = field(default_factory=list)
    # What the counts of `ignored_topics` count: bag messages, HDF5 episodes, LeRobot frames.
    ignored_unit: str = "messages"

    @property
    def n_episodes(self) -> int:
        return len(self.episodes)

    @property
    def n_frames(self) -> int:
        return sum(e.n_frames for e in self.episodes)

    @property
    def n_messages(self) -> int:
        return sum(s.n_messages for e in self.episodes for s in e.streams)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "src": self.src,
            "out": self.out,
            "fps": self.fps,
            "dry_run": self.dry_run,
            "n_episodes": self.n_episodes,
            "n_frames": self.n_frames,
            "n_messages": self.n_messages,
            "ignored_topics": dict(self.ignored_topics),
            "ignored_unit": self.ignored_unit,
            "notes": list(self.notes),
            "episodes": [e.to_json() for e in self.episodes],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def __str__(self) -> str:
        verb = "would write" if self.dry_run else "wrote"
        lines = [
            f"[vla-convert] {self.format}: {self.src} -> {self.out}  ({verb} {self.n_episodes} episodes, "
            f"{self.n_frames} frames at {self.fps:g} Hz)"
        ]
        for i, ep in enumerate(self.episodes):
            keys = ", ".join(f"{k} {tuple(v)}" for k, v in ep.keys.items())
            lines.append(
                f"  episode {i}: {ep.source}  {ep.n_frames} frames, {ep.duration_s:.2f} s, "
                f"instruction {ep.instruction!r}"
            )
            lines.append(f"    keys: {keys}")
            if ep.streams:
                lines.append(
                    f"    {'stream':<14} {'source':<28} {'msgs':>6} {'rate Hz':>8} {'used':>6} {'dropped':>7} "
                    f"{'repeated':>8} {'err mean ms':>11} {'err max ms':>10}  time"
                )
            for s in ep.streams:
                lines.append(
                    f"    {s.name:<14} {s.source:<28} {s.n_messages:>6} {s.rate_hz:>8.2f} {s.n_used:>6} "
                    f"{s.n_dropped:>7} {s.n_repeated:>8} {s.err_mean_ms:>11.3f} {s.err_max_ms:>10.3f}  "
                    f"{s.time_source}"
                )
            lines += [f"    note: {n}" for n in ep.notes]
        for topic, n in sorted(self.ignored_topics.items()):
            lines.append(f"  not mapped (dropped): {topic} ({n} {self.ignored_unit})")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)
