"""DAgger labels for chunked policies: the expert's own continuation from the states a policy visits.

`LabelRecorder` pairs each visited state with the expert's *next* command. A policy that predicts
an H-step chunk is trained on H consecutive labels, and along the policy's own (slower, off-path)
trajectory those labels are not a trajectory the expert would ever produce: measured on pick_cube,
two rounds made the policy slower and worse (48 -> 42 -> 37/50). `BranchRecorder` instead forks the
simulator at every `every`-th visited state and lets the expert finish the task from there, in a
second environment (reset with the episode's seed, so the task's sampled attributes are the same,
then set to the visited state with `mj_setState`), rendering its cameras as a demonstration does.
Each fork that succeeds is an ordinary demonstration that starts where the policy went: every
training window of it is a chunk the expert really executes (re-approach, re-grasp, retry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

import sim  # first: it picks MuJoCo's headless GL backend, which must precede `import mujoco`

# mujoco.mjtState.mjSTATE_INTEGRATION: physics + controls + warm start, so a fork continues exactly
# as the original would under the same commands, not only from the same positions and velocities.
FORK_STATE = "mjSTATE_INTEGRATION"


def _spec():
    import mujoco

    return mujoco, getattr(mujoco.mjtState, FORK_STATE)


@dataclass
class Branch:
    """One fork: where it started in the policy's episode, and the expert's episode from there.

    data: ``{state (T, 7), qvel (T, 6), image_<cam> (T, H, W, 3), action (T, 7)}``, the first frame
    the policy's own observation at ``step``; info: JSON-ready provenance.
    """

    data: dict[str, np.ndarray]
    instruction: str
    success: bool
    info: dict[str, Any] = field(default_factory=dict)


class BranchRecorder:
    """An evaluation observer (`vla.evaluation.simulator.evaluate(..., observer=)`) that forks the
    expert from every `every`-th state of each episode (never step 0: that is an ordinary demo).

    Args:
        task / env_overrides: build the fork environment (the evaluation's own task and fields).
        every: control steps between forks.
        max_steps: the expert's step budget from a fork (its env truncates there); None: the task's.
        keep_failures: also keep forks the expert did not finish (default: only successes, as
            `vla-collect` keeps only successful demos; a truncated fork would teach stopping short).
        mixed: the DAgger mixture, when beta > 0 (it gets an `ExpertLabeler` of the driven env).

    `branches` (after the evaluation): every kept fork in order; `rollout_index` of each says which
    episode of the evaluation it forked from. `attempted` counts all forks.
    """

    def __init__(
        self,
        task: str,
        env_overrides: dict[str, Any] | None = None,
        every: int = 8,
        max_steps: int | None = None,
        keep_failures: bool = False,
        mixed: Any = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"BranchRecorder: every must be >= 1, got {every}")
        self.task, self.env_overrides = task, dict(env_overrides or {})
        self.every, self.max_steps, self.keep_failures = int(every), max_steps, keep_failures
        self.mixed = mixed
        self.labeler: Any = None
        self.branches: list[Branch] = []
        self.attempted = 0
        self._fork_env: Any = None
        self._fork_expert: Any = None
        self._env: Any = None
        self._seed: int | None = None
        self._episode = -1
        self._t = 0
        self._instruction = ""
        self._points: list[tuple[int, np.ndarray, dict[str, np.ndarray]]] = []

    # -- observer ---------------------------------------------------------------------------------
    def on_reset(self, env: Any, obs: dict[str, Any]) -> None:
        self.finish()
        self._env = env.unwrapped
        self._seed = self._env.np_random_seed
        self._episode += 1
        self._t = 0
        self._instruction = str(obs.get("instruction", ""))
        if self.mixed is not None and getattr(self.mixed, "beta", 0.0) > 0.0:
            from vla.dagger.labeler import ExpertLabeler

            if self.labeler is None:
                self.labeler = ExpertLabeler(env)
                self.mixed.labeler = self.labeler
            self.labeler.start()

    def on_step(self, obs: dict[str, Any], action: np.ndarray) -> None:
        if self._env is None:
            raise RuntimeError("BranchRecorder.on_step before on_reset")
        if self.labeler is not None:
            self.labeler.label()  # keeps the mixture's expert in step with the episode
        if self._t > 0 and self._t % self.every == 0:
            mujoco, spec = _spec()
            m, d = self._env.model, self._env.data
            state = np.empty(mujoco.mj_stateSize(m, spec))
            mujoco.mj_getState(m, d, state, spec)
            frame = {k: np.array(v) for k, v in obs.items() if k != "instruction"}
            self._points.append((self._t, state, frame))
        self._t += 1

    def finish(self) -> None:
        """Run the forks of the episode just ended (called by the next `on_reset`, and at the end)."""
        points, self._points = self._points, []
        for step, state, frame in points:
            self.attempted += 1
            br = self.fork(state, frame, step)
            if br.success or self.keep_failures:
                self.branches.append(br)

    def dataset_episodes(
        self, res: dict[str, Any]
    ) -> list[tuple[dict[str, np.ndarray], str, bool, dict[str, Any]]]:
        """The kept forks as (data, instruction, success, provenance) for `vla.dagger.aggregate`;
        `res` is the evaluation's result (each fork's rollout seed and outcome)."""
        out = []
        for b in self.branches:
            ep = res["episodes"][b.info["rollout_index"]]
            prov = {
                "labels": "branch",
                **b.info,
                "rollout_seed": int(ep["seed"]),
                "rollout_success": bool(ep["success"]),
            }
            out.append((b.data, b.instruction, b.success, prov))  # success: the expert's, from the fork
        return out

    def close(self) -> None:
        if self._fork_env is not None:
            self._fork_env.close()
            self._fork_env = None

    # -- forks ------------------------------------------------------------------------------------
    def fork(self, state: np.ndarray, frame: dict[str, np.ndarray], step: int) -> Branch:
        """The expert from the simulator state `state` (`FORK_STATE` vector of this episode), whose
        observation was `frame`, until success or its step budget."""
        mujoco, spec = _spec()
        if self._fork_env is None:
            over = dict(self.env_overrides)
            if self.max_steps is not None:
                over["max_steps"] = int(self.max_steps)
            self._fork_env = sim.make(self.task, **over)
            self._fork_expert = sim.make_expert(self._fork_env)
        env, expert = self._fork_env, self._fork_expert
        u = env.unwrapped
        env.reset(seed=self._seed)  # the task's target, colours, pads and instruction
        mujoco.mj_setState(u.model, u.data, state, spec)
        mujoco.mj_forward(u.model, u.data)
        expert.reset()  # plans from this state (phase, re-open, re-approach, lift what is held)
        expert.follow()  # continues from the command the arm is tracking, not from rest
        frames: dict[str, list[np.ndarray]] = {k: [v] for k, v in frame.items()}
        obs: dict[str, Any] = dict(frame)
        success = False
        while True:
            action = np.asarray(expert.act(obs), np.float32)
            frames.setdefault("action", []).append(action)
            obs, _, terminated, truncated, info = env.step(action)
            success = success or bool(info["is_success"])
            if terminated or truncated:
                break
            for k, v in obs.items():
                if k != "instruction":
                    frames[k].append(np.asarray(v))
        data = {k: np.stack(v) for k, v in frames.items()}
        info = {
            "branch_step": int(step),
            "rollout_index": self._episode,
            "rollout_seed": None if self._seed is None else int(self._seed),
            "replans": list(getattr(expert, "replans", [])),
        }
        return Branch(data, self._instruction, success, info)
