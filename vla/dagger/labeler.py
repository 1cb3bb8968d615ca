"""The simulator's expert as a teacher: labels for the states a learned policy visits (DAgger).

`ExpertLabeler` keeps a re-plannable `sim` expert beside an episode that another controller drives.
At every step it takes the command the arm is tracking (`expert.follow`: ``q + lag * qd``) as its
own and answers with the command it would give next from the true simulator state: one expert
step from the command in force, as every action of the demonstrations is. The stored episodes pair
the policy's observations with these labels, so a training window's action chunk is the expert's
answer at each state the policy reached.

`MixedPolicy` runs DAgger's mixture (Ross et al. 2011): each chunk comes from the expert with
probability beta (its imagined chunk from the same labeller), else from the learned policy.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ExpertLabeler:
    """The task's expert, labelling the states of an episode someone else drives.

    Per episode: `start()` right after the env was reset, then `label()` in every state before
    its step runs.
    """

    def __init__(self, env: Any) -> None:
        import sim

        self.env = env.unwrapped
        self.expert = sim.make_expert(self.env)

    def start(self) -> None:
        """A new episode: the expert plans from the simulator's current state."""
        self.expert.reset()

    def label(self) -> np.ndarray:
        """(7,) float32: the expert's next command from the current state. The arm's state (the
        command it tracks), not what the policy executed, anchors it."""
        self.expert.follow()
        return np.asarray(self.expert.act(), np.float32)

    def imagine(self, horizon: int) -> np.ndarray:
        """(horizon, 7) float32: the chunk the expert would command from here (the labeller's state is
        unchanged: the first row equals what `label()` returns next)."""
        snap = self.expert.snapshot()
        try:
            first = self.label()
            rest = [np.asarray(self.expert.act(), np.float32) for _ in range(horizon - 1)]
            return np.stack([first, *rest])
        finally:
            self.expert.restore(snap)

    @property
    def replans(self) -> list[dict[str, Any]]:
        """The expert's re-plans this episode (what it had to recover from)."""
        return list(self.expert.replans)


class MixedPolicy:
    """A `ChunkPolicy`: the expert's chunk with probability `beta`, else `policy`'s (DAgger's mixture).

    `labeler` is the episode's `ExpertLabeler` (None until the first episode starts: then only the
    policy answers). `rng` draws per chunk, so a seeded generator makes the rollouts repeatable.
    """

    def __init__(self, policy: Any, beta: float, rng: np.random.Generator) -> None:
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"MixedPolicy: beta must be in [0, 1], got {beta}")
        self.policy, self.beta, self.rng = policy, float(beta), rng
        self.labeler: ExpertLabeler | None = None
        self.expert_chunks = 0
        self.policy_chunks = 0
        self.horizon = int(getattr(policy, "horizon", 16))

    @property
    def n_obs_steps(self) -> int:
        return int(getattr(self.policy, "n_obs_steps", 2))

    @property
    def n_action_steps(self) -> int:
        return int(getattr(self.policy, "n_action_steps", 8))

    def reset(self) -> None:
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def __call__(self, obs: dict[str, Any], prefix: np.ndarray | None) -> np.ndarray:
        if self.labeler is not None and self.beta > 0.0 and self.rng.random() < self.beta:
            self.expert_chunks += 1
            chunk = self.labeler.imagine(self.horizon)
            if prefix is not None and len(prefix):
                chunk[: len(prefix)] = prefix  # committed actions run as they are
            return chunk
        self.policy_chunks += 1
        return self.policy(obs, prefix)


class LabelRecorder:
    """An evaluation observer (`vla.evaluation.simulator.evaluate(..., observer=)`) that records each
    episode's observations with the expert's labels as the `action` of a dataset episode.

    Episodes (in order): `episodes` after the evaluation, each `(data, instruction, replans)` with
    data `{state (T, 7), qvel (T, 6), image_<cam> (T, H, W, 3), action (T, 7)}`.
    """

    def __init__(self, mixed: MixedPolicy | None = None) -> None:
        self.mixed = mixed
        self.labeler: ExpertLabeler | None = None
        self.episodes: list[tuple[dict[str, np.ndarray], str, list[dict[str, Any]]]] = []
        self._frames: dict[str, list[np.ndarray]] | None = None
        self._instruction = ""

    def on_reset(self, env: Any, obs: dict[str, Any]) -> None:
        self.finish()
        if self.labeler is None:
            self.labeler = ExpertLabeler(env)
            if self.mixed is not None:
                self.mixed.labeler = self.labeler
        self.labeler.start()
        self._frames = {}
        self._instruction = str(obs.get("instruction", ""))

    def on_step(self, obs: dict[str, Any], action: np.ndarray) -> None:
        assert self.labeler is not None and self._frames is not None, "on_step before on_reset"
        label = self.labeler.label()
        for k, v in obs.items():
            if k != "instruction":
                self._frames.setdefault(k, []).append(np.asarray(v))
        self._frames.setdefault("action", []).append(label)

    def dataset_episodes(
        self, res: dict[str, Any]
    ) -> list[tuple[dict[str, np.ndarray], str, bool, dict[str, Any]]]:
        """The recorded episodes as (data, instruction, success, provenance) for `vla.dagger.aggregate`;
        `res` is the evaluation's result (each episode's seed and outcome, in order)."""
        return [
            (
                data,
                instruction,
                bool(ep["success"]),
                {"labels": "step", "rollout_seed": int(ep["seed"]), "replans": replans},
            )
            for (data, instruction, replans), ep in zip(self.episodes, res["episodes"])
        ]

    def finish(self) -> None:
        """Close the episode being recorded (called by the next `on_reset`, and once at the end)."""
        if self._frames and self._frames.get("action"):
            data = {k: np.stack(v) for k, v in self._frames.items()}
            replans = self.labeler.replans if self.labeler is not None else []
            self.episodes.append((data, self._instruction, replans))
        self._frames = None
