"""DAgger: labels of visited states, the mixture, and a whole round on a tiny debug model.

Oracles independent of the expert's code: the task's own success test, and MuJoCo forward
kinematics on a fresh `MjData` (where a label's joint targets put the pinch point).
"""

from __future__ import annotations

import json
from pathlib import Path

import mujoco
import numpy as np
import pytest

import sim
from sim.scene import PINCH_SITE
from vla.dagger import LabelRecorder, MixedPolicy
from vla.evaluation.simulator import EvalConfig, evaluate

ENV = {"image_size": 32}


class HoldPolicy:
    """A policy that never moves: every chunk repeats the measured joints, gripper open."""

    n_obs_steps, n_action_steps, horizon = 2, 4, 8

    def __call__(self, obs, prefix):
        a = np.append(obs["state"][-1][:6], 0.0).astype(np.float32)
        return np.repeat(a[None], self.horizon, axis=0)


def _rollout(policy, beta: float, tmp_path: Path, n: int = 2, max_steps: int | None = None):
    rec = LabelRecorder()
    mixed = MixedPolicy(policy, beta, np.random.default_rng(0))
    rec.mixed = mixed
    cfg = EvalConfig(
        task="pick_cube", env_overrides=ENV, n_episodes=n, seed=5, n_videos=0, out_dir=str(tmp_path),
        progress=False, max_steps=max_steps,
    )  # fmt: skip
    res = evaluate(mixed, cfg, observer=rec)
    return res, rec, mixed


def test_expert_mixture_at_beta_one_is_the_expert(tmp_path: Path) -> None:
    """beta = 1: every chunk is the expert's, so the episodes succeed as the expert's do (judged by
    the task), and each label is (nearly) what was executed in that state."""
    res, rec, mixed = _rollout(HoldPolicy(), 1.0, tmp_path)
    assert mixed.policy_chunks == 0 and mixed.expert_chunks > 0
    assert res["successes"] == 2, res["episodes"]
    for data, _, _ in rec.episodes:
        T = len(data["action"])
        assert data["state"].shape == (T, 7) and data["image_front"].shape == (T, 32, 32, 3)
        # Executed = the commanded actions (the state at t+1 tracks the command at t).
        err = np.abs(data["action"][:-1, :6] - data["state"][1:, :6]).mean()
        assert err < 0.05, err


def test_labels_of_a_frozen_policy_lead_to_the_cube(tmp_path: Path) -> None:
    """beta = 0 with a policy that never moves: the robot stays put, and every label commands the
    pinch toward the target (checked with MuJoCo's forward kinematics on a fresh MjData)."""
    res, rec, mixed = _rollout(HoldPolicy(), 0.0, tmp_path, n=1, max_steps=20)
    assert mixed.expert_chunks == 0 and res["successes"] == 0
    env = sim.make("pick_cube", render_images=False, **ENV)
    try:
        env.reset(seed=5)
        m = env.unwrapped.model
        d = mujoco.MjData(m)
        site = m.site(PINCH_SITE).id
        t = env.unwrapped.task
        cube = t.cube_pos(t.target)
        qadr = env.unwrapped.arm_qpos_ids

        def pinch(q: np.ndarray) -> np.ndarray:
            d.qpos[:] = env.unwrapped.data.qpos
            d.qpos[qadr] = q
            mujoco.mj_kinematics(m, d)
            return d.site_xpos[site].copy()

        data, _, _ = rec.episodes[0]
        above = cube + np.array([0.0, 0.0, 0.1])
        here = np.linalg.norm(pinch(data["state"][0, :6].astype(np.float64)) - above)
        # The arm never moved (the policy holds) ...
        assert np.abs(data["state"][:, :6] - data["state"][0, :6]).max() < 0.02
        # ... and every label starts it toward the pre-grasp point above the cube: from a standstill,
        # one step of the expert's acceleration (a few mm), the same in every (unchanged) state.
        dist = np.array([np.linalg.norm(pinch(a[:6].astype(np.float64)) - above) for a in data["action"]])
        assert np.all(here - dist > 0.002), (here, dist)
        assert np.ptp(dist) < 1e-3, dist
        assert np.all(data["action"][:, 6] < 0.5)  # approaching: the gripper stays open
    finally:
        env.close()


def test_vla_dagger_debug_round_end_to_end(tmp_path: Path) -> None:
    """`vla-dagger experiment=debug`: bootstrap, one round, labelled episodes appended and embedded,
    the fine-tuned checkpoint resumed from the previous one, a success table and a plot."""
    from vla.cli import dagger as cli
    from vla.data import ReplayBuffer
    from vla.encoders.cache import EmbeddingStore
    from vla.policy import VLAPolicy

    out = tmp_path / "dg"
    with pytest.raises(SystemExit) as ex:
        cli.main(["experiment=debug", f"out_dir={out}"])
    assert ex.value.code == 0
    state = json.loads((out / "dagger.json").read_text())
    rows = state["rounds"]
    assert [r["round"] for r in rows] == [0, 1] and "pending" not in state
    assert rows[1]["checkpoint"].endswith("round_1/train/checkpoints/6")  # 4 debug steps + 2 fine-tune
    assert (out / "dagger.png").is_file()
    rb = ReplayBuffer.open(out / "bootstrap" / "demos.zarr")
    # 2 rollouts of 12 steps, forks at steps 4 and 8 of each: the expert's successful forks are appended.
    n_new = rb.n_episodes - 3
    roll = rows[1]["rollouts"]
    assert roll["labels"] == "branch" and roll["forks"] == 4 and roll["forks_kept"] == n_new >= 1
    assert rows[1]["appended_episodes"] == [3, 3 + n_new]
    for i in range(3, 3 + n_new):
        info = rb.episode_info(i)
        d = info["dagger"]
        assert info["source"] == "dagger" and d["round"] == 1 and d["labels"] == "branch"
        assert d["branch_step"] in (4, 8) and info["success"] and d["rollout_seed"] == info["seed"]
        ep = rb.episode(i)
        assert len(ep["action"]) == info["length"] > 12  # the expert finished the task from the fork
        assert np.isfinite(ep["action"]).all() and ep["image_wrist"].shape[1:] == (32, 32, 3)
    # The new frames were embedded with the policy's own encoder: the store covers all of them.
    enc = VLAPolicy.from_checkpoint(Path(rows[1]["checkpoint"])).encoder
    store = EmbeddingStore(rb, enc.fingerprint)
    assert store.attrs["n_episodes"] == 3 + n_new
    # Run again: nothing left to do, the table is unchanged.
    with pytest.raises(SystemExit):
        cli.main(["experiment=debug", f"out_dir={out}"])
    assert json.loads((out / "dagger.json").read_text())["rounds"] == rows
    assert ReplayBuffer.open(out / "bootstrap" / "demos.zarr").n_episodes == 3 + n_new
    _round0_reuse(out, state, rows)


def _round0_reuse(out: Path, state: dict, rows: list[dict]) -> None:
    """`dagger.round0_eval`: the round-0 eval.json the run just wrote (a real `evaluate` report) is
    accepted for the same checkpoint and settings, and refused, naming the field, for another
    checkpoint, other seeds, fewer episodes, or a report that does not record its denoising steps."""
    from dataclasses import replace

    from vla.dagger.round0 import reused_round0
    from vla.dagger.rounds import DaggerConfig

    cfg = DaggerConfig(**{**state["config"], "train_overrides": tuple(state["config"]["train_overrides"])})
    report = out / "round_0" / "eval" / "eval.json"
    start = Path(rows[0]["checkpoint"])
    res = reused_round0(report, start, cfg)
    assert res["successes"] == rows[0]["successes"] and res["n_episodes"] == cfg.eval_episodes
    with pytest.raises(ValueError, match="checkpoint"):
        reused_round0(report, Path(rows[1]["checkpoint"]), cfg)
    with pytest.raises(ValueError, match=r"seed .*round 0"):
        reused_round0(report, start, replace(cfg, eval_seed=cfg.eval_seed + 1))
    with pytest.raises(ValueError, match="n_episodes"):
        reused_round0(report, start, replace(cfg, eval_episodes=cfg.eval_episodes + 1))
    with pytest.raises(ValueError, match="safety"):
        reused_round0(report, start, replace(cfg, safety=not cfg.safety))
    old = json.loads(report.read_text())
    del old["num_inference_steps"]
    (out / "old.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="num_inference_steps 'not recorded'"):
        reused_round0(out / "old.json", start, cfg)


def test_vla_dagger_help_and_missing_checkpoint(capsys) -> None:
    from vla.cli import dagger as cli

    with pytest.raises(SystemExit) as ex:
        cli.main(["--help"])
    assert ex.value.code == 0 and "vla-dagger" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ex:
        cli.main([])
    assert ex.value.code == 2 and "checkpoint" in capsys.readouterr().err


def test_repeat_sources_oversamples_dagger_episodes(tmp_path: Path) -> None:
    from vla.data import DatasetMeta, ReplayBuffer
    from vla.training.batches import repeat_episodes

    rb = ReplayBuffer.create(tmp_path / "r.zarr", DatasetMeta(fps=20.0, robot="ur5e_2f85", camera_names=[]))
    for i, source in enumerate([None, "dagger", None, "dagger"]):
        info = {"source": source} if source else {}
        rb.add_episode(
            {"state": np.zeros((3, 7), np.float32), "action": np.zeros((3, 7), np.float32)},
            f"t{i}",
            info=info,
        )
    assert repeat_episodes(rb, [0, 1, 2, 3], {}) == [0, 1, 2, 3]
    assert repeat_episodes(rb, [0, 1, 2, 3], {"dagger": 3}) == [0, 1, 1, 1, 2, 3, 3, 3]
    assert repeat_episodes(rb, [0, 2], {"dagger": 3}) == [0, 2]


class DriftPolicy(HoldPolicy):
    """A policy that swings the base joint away from the cube, gripper open: it never succeeds, and
    the states it visits are ones no demonstration passes through."""

    def __call__(self, obs, prefix):
        a = np.append(obs["state"][-1][:6], 0.0).astype(np.float32)
        chunk = np.repeat(a[None], self.horizon, axis=0)
        chunk[:, 0] += 0.03 * np.arange(1, self.horizon + 1)
        return chunk


class _Tee:
    """Forwards to a recorder and keeps every executed action (the oracle's replay script)."""

    def __init__(self, inner) -> None:
        self.inner, self.actions = inner, []

    def on_reset(self, env, obs) -> None:
        self.inner.on_reset(env, obs)

    def on_step(self, obs, action) -> None:
        self.actions.append(np.asarray(action, np.float32).copy())
        self.inner.on_step(obs, action)

    def finish(self) -> None:
        self.inner.finish()


def test_branch_forks_are_expert_episodes_from_the_visited_states(tmp_path: Path) -> None:
    """Forks every 4 steps of a drifting policy's episode. Oracle: a fresh env reset with the same
    seed replays the policy's executed actions up to the fork, then the fork's actions; MuJoCo is
    deterministic, so it must pass through the fork's recorded states and the task's own judge must
    call the end a success."""
    from vla.dagger.branches import BranchRecorder

    rec = BranchRecorder("pick_cube", ENV, every=4, max_steps=100)
    tee = _Tee(rec)
    cfg = EvalConfig(
        task="pick_cube", env_overrides=ENV, n_episodes=1, seed=7, n_videos=0, out_dir=str(tmp_path),
        progress=False, max_steps=12,
    )  # fmt: skip
    res = evaluate(DriftPolicy(), cfg, observer=tee)
    rec.close()
    assert res["successes"] == 0 and rec.attempted == 2  # forks at steps 4 and 8, never at 0
    assert [b.info["branch_step"] for b in rec.branches] == [4, 8]
    env = sim.make("pick_cube", **ENV, max_steps=200)
    try:
        for b in rec.branches:
            T = len(b.data["action"])
            assert all(len(v) == T for v in b.data.values()) and b.data["image_wrist"].shape[1:] == (
                32,
                32,
                3,
            )
            obs, _ = env.reset(seed=7)
            start = obs["state"].copy()
            for a in tee.actions[: b.info["branch_step"]]:
                obs, *_ = env.step(a)
            # The fork starts in the visited state, base joint swung ~0.1 rad per 4 steps.
            np.testing.assert_allclose(b.data["state"][0], obs["state"], atol=1e-6)
            assert abs(obs["state"][0] - start[0]) > 0.05
            np.testing.assert_array_equal(b.data["image_front"][0], obs["image_front"])
            success = False
            for t, a in enumerate(b.data["action"]):
                np.testing.assert_allclose(obs["state"], b.data["state"][t], atol=1e-5)
                obs, _, _, _, info = env.step(a)
                success = bool(info["is_success"])
            assert success and b.success
    finally:
        env.close()
