"""Scripted-expert demonstration collection into a zarr replay buffer.

Runs ``sim``'s expert for a task, episode after episode with seeds ``seed, seed + 1, ...``, keeps the
successful ones (or all, with ``keep_failures``) and appends each to a :class:`vla.data.ReplayBuffer`
with its instruction. With ``recovery`` a share of the episodes get an injected failure
(`sim.failures`: the cube knocked away, dropped, half-grasped, the gripper closed on nothing) that
the re-plannable expert recovers from: demos that show a retry, stored as ordinary episodes whose
info says what was injected and how the expert re-planned (``info["recovery"]``). Same config and seed -> same dataset (MuJoCo is deterministic on one machine).

Per episode of T steps the store gets, time-aligned (observation at t, action applied at t):
``state (T, 7) f32``, ``qvel (T, 6) f32``, ``action (T, 7) f32``, ``image_<cam> (T, H, W, 3) u8``.

With ``workers > 1`` episodes run in spawned worker processes (each builds its env once), and the main
process alone appends them to the store, strictly in seed order: the dataset is the same as with one
worker, only faster. Each attempt depends on its seed alone (``env.reset(seed)`` resets physics,
appearance and the expert), which is what makes the split over processes exact.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from vla.shards import check_shard, shard_range

if TYPE_CHECKING:  # the data package loads zarr: imported where a store is written
    from vla.data import DatasetMeta, ReplayBuffer


@dataclass(frozen=True)
class CollectConfig:
    """What to collect.

    Attributes:
        task: registered ``sim`` task name.
        n_episodes: episodes to store.
        out: path of the zarr store to create.
        seed: seed of the first attempt; attempt i uses ``seed + i``.
        keep_failures: also store episodes the expert failed (``info["success"]`` says which).
        max_attempts: give up after this many attempts (default ``2 * n_episodes + 10``).
        resume: continue an interrupted collection into the existing store at ``out`` (same task,
            seed and cameras): stored episodes are kept and attempts go on after the last stored
            episode's seed, so the result equals an uninterrupted run.
        overwrite: replace an existing store at ``out``, atomically: the new store is written beside
            it and swapped in once complete (an interrupted run leaves the old one intact).
        video_episodes: write an mp4 of the first this-many stored episodes to ``video_path``.
        video_path: default ``<out without .zarr>.mp4``.
        env_overrides: fields of the task's config dataclass (image size, cameras, randomization, ...).
        progress: show a tqdm progress bar.
        extra_meta: JSON-able provenance stored in the dataset attributes (e.g. the resolved config).
        action_noise: DART-style noise on the executed arm targets (`ActionNoise`); None: clean demos.
        recovery: recovery demos (`Recovery`): a share of episodes with an injected failure.
        workers: processes running episodes; 1 runs them in this process. The stored dataset does not
            depend on it (episodes are appended in seed order either way).
        robot / joint_names: the robot description's name and dataset names of the 7 state/action
            dims (configs/robot/<robot>.yaml dataset_joint_names); None: the simulator model's arm
            joints + "gripper". The arm names must be the simulated model's.
        shard / num_shards: run only the attempts of shard `shard`'s contiguous block of attempts
            0..n_episodes-1 (`vla.shards.shard_range`; attempt i keeps seed ``seed + i``), storing
            its successes without replacing failures; `vla.collect_shards.merge_shards` joins the
            shard stores and makes up the failures with attempts n_episodes, n_episodes + 1, ... as
            the unsharded run does, so the merged store equals the unsharded one.
    """

    task: str = "pick_cube"
    n_episodes: int = 10
    out: str = "outputs/demos/pick_cube.zarr"
    seed: int = 0
    keep_failures: bool = False
    max_attempts: int | None = None
    overwrite: bool = False
    resume: bool = False
    video_episodes: int = 0
    video_path: str | None = None
    env_overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    extra_meta: dict[str, Any] = field(default_factory=dict)
    workers: int = 1
    action_noise: ActionNoise | None = None
    recovery: Recovery | None = None
    robot: str = "ur5e_2f85"
    joint_names: tuple[str, ...] | None = None
    shard: int = 0
    num_shards: int = 1

    def __post_init__(self) -> None:
        if self.n_episodes < 1:
            raise ValueError(f"CollectConfig.n_episodes must be >= 1, got {self.n_episodes}")
        if self.max_attempts is not None and self.max_attempts < self.n_episodes:
            raise ValueError(
                f"CollectConfig.max_attempts ({self.max_attempts}) must be >= n_episodes ({self.n_episodes})"
            )
        if self.resume and self.overwrite:
            raise ValueError(
                "CollectConfig: resume=true continues the store, overwrite=true replaces it; pick one"
            )
        if self.video_episodes < 0:
            raise ValueError(f"CollectConfig.video_episodes must be >= 0, got {self.video_episodes}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"CollectConfig.workers must be an integer >= 1, got {self.workers!r}")
        check_shard(self.shard, self.num_shards)
        if self.num_shards > self.n_episodes:
            raise ValueError(f"CollectConfig.num_shards={self.num_shards} > n_episodes={self.n_episodes}")
        if self.num_shards > 1 and self.resume:
            raise ValueError(
                "CollectConfig: resume=true is not supported for one shard (num_shards > 1); rerun the "
                "shard with overwrite=true (it takes 1/num_shards of the time)"
            )


@dataclass(frozen=True)
class CollectResult:
    path: Path
    n_saved: int
    n_attempts: int
    n_success: int
    seconds: float
    video: Path | None

    @property
    def success_rate(self) -> float:
        return self.n_success / max(self.n_attempts, 1)

    @property
    def episodes_per_minute(self) -> float:
        return 60.0 * self.n_attempts / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class Recovery:
    """Recovery demos: episodes started by the expert into which a failure is injected.

    fraction: share of the episodes (drawn per seed, so collection stays deterministic) that get a
        failure; the rest are ordinary demos.
    kinds: failure kinds to draw from (`sim.failures.failure_kinds`); empty: every kind of the task.
    max_steps_scale: the episode step limit is the task's (with env_overrides) times this: a retry
        takes longer, and a successful episode ends at its success anyway.
    Why: a cloned policy whose grasp slips lifts an empty gripper and never retries, because no
    demonstration shows a retry; these do.
    """

    fraction: float = 0.3
    kinds: tuple[str, ...] = ()
    max_steps_scale: float = 2.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"Recovery.fraction must be in [0, 1], got {self.fraction}")
        if self.max_steps_scale < 1.0:
            raise ValueError(f"Recovery.max_steps_scale must be >= 1, got {self.max_steps_scale}")
        from sim.failures import FAILURE_KINDS

        bad = [k for k in self.kinds if k not in FAILURE_KINDS]
        if bad:
            raise ValueError(f"Recovery.kinds: unknown {bad} (known: {list(FAILURE_KINDS)})")

    def draw(self, task: str, seed: int) -> str | None:
        """The failure kind of the episode with this seed (None: an ordinary demo)."""
        from sim.failures import failure_kinds

        kinds = [k for k in failure_kinds(task) if not self.kinds or k in self.kinds]
        rng = np.random.default_rng([seed, 0x5245])
        if not kinds or rng.random() >= self.fraction:
            return None
        return str(kinds[int(rng.integers(len(kinds)))])


@dataclass(frozen=True)
class ActionNoise:
    """DART-style noise on the EXECUTED arm targets; the stored `action` stays the expert's command.

    std: stationary standard deviation per arm joint [rad] (0: off).
    tau_s: correlation time of the Ornstein-Uhlenbeck process [s]: slow drifts that move the arm a
        few cm off the expert's path, which the expert's next (absolute) targets then bring back.
    Why: clean demos only ever show the gripper exactly on its path, so a cloned policy never sees
    how to recover from its own small errors (Laskey et al. 2017, DART). The noise is seeded by the
    episode seed, so collection stays deterministic.
    """

    std: float = 0.0
    tau_s: float = 0.5
    # Expert phases (waypoint names) during which noise is injected; elsewhere the drift decays with
    # settle_tau_s. Noise during the final descent and grasp mostly makes the expert fail (26% success
    # at std 0.03 rad when always on), and those episodes are dropped anyway.
    phases: tuple[str, ...] = ("pregrasp", "carry", "approach", "above")
    # Why fast: a drift that lingers into the slow final move keeps the arm off the waypoint, the expert
    # waits for it with its command frozen, and those idle stretches teach the policy to hover
    # (tau 0.5 s left 38% of pre-grasp frames idle, median pause 16 steps; see ARCHITECTURE.md).
    settle_tau_s: float = 0.1

    def __post_init__(self) -> None:
        if not (self.std >= 0 and self.tau_s > 0 and self.settle_tau_s > 0):
            raise ValueError(
                f"ActionNoise: need std >= 0, tau_s > 0 and settle_tau_s > 0, got {self.std}, {self.tau_s}, "
                f"{self.settle_tau_s}"
            )


def run_episode(
    env,
    expert,
    seed: int,
    video_frames: list[np.ndarray] | None = None,
    noise: ActionNoise | None = None,
    failure: str | None = None,
    provenance: dict[str, Any] | None = None,
) -> tuple[dict, bool]:
    """Roll out the expert once: ({key: (T, ...)} arrays, success). With `noise`, the executed arm
    targets are the expert's plus an OU process; `action` stores the expert's own command. With
    `failure` (a `sim.failures` kind) that failure is injected; `provenance` (a dict) then receives
    what was injected and the expert's re-plans (as do the re-plans of any episode)."""
    obs, _ = env.reset(seed=seed)
    injector = None
    if failure is not None:
        from sim.failures import FailureInjector

        injector = FailureInjector(env, expert, failure, np.random.default_rng([seed, 0x4641]))
        obs = injector.start(obs)
    expert.reset()
    frames: dict[str, list[np.ndarray]] = {}
    success = False
    rng = np.random.default_rng([seed, 0x4441]) if noise is not None and noise.std > 0 else None
    if rng is not None:
        dt = 1.0 / float(env.cfg.control_rate_hz)
        decay = float(np.exp(-dt / noise.tau_s))
        settle = float(np.exp(-dt / noise.settle_tau_s))
        drift = rng.normal(0.0, noise.std, 6)
    while True:
        action = expert.act(obs)
        for k, v in obs.items():
            if k != "instruction":
                frames.setdefault(k, []).append(v)
        frames.setdefault("action", []).append(action)
        if video_frames is not None:
            video_frames.append(env.render())
        executed = action
        if rng is not None:
            active = getattr(expert, "phase", None) in noise.phases
            kick = rng.normal(0.0, noise.std, 6)
            drift = (decay * drift + np.sqrt(1 - decay**2) * kick) if active else settle * drift
            executed = action.copy()
            executed[:6] += drift.astype(action.dtype)
        if injector is not None:
            executed = injector.execute(executed)
        obs, _, terminated, truncated, info = env.step(executed)
        success = success or bool(info["is_success"])
        if terminated or truncated:
            break
    if provenance is not None:
        if injector is not None:
            provenance["injected"] = {**injector.info, "fired": bool(injector.fired)}
        replans = list(getattr(expert, "replans", []))
        if replans:
            provenance["replans"] = replans
    return {k: np.stack(v) for k, v in frames.items()}, success


@dataclass(frozen=True)
class Attempt:
    """One finished expert rollout, as a runner hands it back.

    data: {key: (T, ...)} arrays (see module docstring); video: ``(T, R, R, 3)`` uint8 render-size front
    frames when they were asked for, else None.
    """

    seed: int
    data: dict[str, np.ndarray]
    success: bool
    instruction: str
    video: np.ndarray | None
    provenance: dict[str, Any] = field(default_factory=dict)


def _rollout(
    env,
    expert,
    seed: int,
    want_video: bool,
    noise: ActionNoise | None = None,
    recovery: Recovery | None = None,
) -> Attempt:
    frames: list[np.ndarray] | None = [] if want_video else None
    failure = recovery.draw(env.unwrapped.task.name, seed) if recovery is not None else None
    prov: dict[str, Any] = {}
    data, success = run_episode(env, expert, seed, frames, noise, failure=failure, provenance=prov)
    video = np.stack(frames) if frames else None
    return Attempt(seed, data, success, env.task.instruction, video, prov)


class _Runner(Protocol):
    """Runs attempts in submission order: ``submit`` queues one, ``next`` returns the oldest."""

    @property
    def in_flight(self) -> int: ...
    def submit(self, seed: int, want_video: bool) -> None: ...
    def next(self) -> Attempt: ...
    def close(self) -> None: ...


class _SerialRunner:
    """Runs each attempt in this process when it is asked for (workers=1)."""

    def __init__(
        self, env, expert, noise: ActionNoise | None = None, recovery: Recovery | None = None
    ) -> None:
        self.env, self.expert, self.noise, self.recovery = env, expert, noise, recovery
        self._queue: deque[tuple[int, bool]] = deque()

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    def submit(self, seed: int, want_video: bool) -> None:
        self._queue.append((seed, want_video))

    def next(self) -> Attempt:
        seed, want_video = self._queue.popleft()
        return _rollout(self.env, self.expert, seed, want_video, self.noise, self.recovery)

    def close(self) -> None:
        self._queue.clear()


# Per worker process: the env and expert built on its first attempt, reused for the following ones.
_WORKER_ENV: dict[str, Any] = {}


def _worker_attempt(
    task: str,
    env_overrides: dict[str, Any],
    seed: int,
    want_video: bool,
    noise: ActionNoise | None = None,
    recovery: Recovery | None = None,
) -> Attempt:
    """Worker-process entry point: one rollout with this process's env (built on first use)."""
    if "env" not in _WORKER_ENV:
        import sim

        env = sim.make(task, **env_overrides)
        _WORKER_ENV.update(env=env, expert=sim.make_expert(env))
    return _rollout(_WORKER_ENV["env"], _WORKER_ENV["expert"], seed, want_video, noise, recovery)


class _PoolRunner:
    """Runs attempts in ``workers`` spawned processes; ``next`` returns them in submission order.

    "spawn" because MuJoCo's EGL/OSMesa contexts are not fork-safe. The caller bounds the number in
    flight, so memory stays at a few episodes (a few MB each at 96 px) however long the collection.
    """

    def __init__(
        self,
        task: str,
        env_overrides: dict[str, Any],
        workers: int,
        attempt_fn=_worker_attempt,
        noise: ActionNoise | None = None,
        recovery: Recovery | None = None,
    ) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.task, self.env_overrides, self._fn = task, dict(env_overrides), attempt_fn
        self.noise, self.recovery = noise, recovery
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
        self._pending: deque[tuple[int, Any]] = deque()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def submit(self, seed: int, want_video: bool) -> None:
        args = (self.task, self.env_overrides, seed, want_video)
        # Only the extras that are set: a custom attempt_fn (tests) need not take them.
        extra = (
            (self.noise, self.recovery) if self.recovery is not None else (self.noise,) if self.noise else ()
        )
        fut = self._pool.submit(self._fn, *args, *extra)
        self._pending.append((seed, fut))

    def next(self) -> Attempt:
        seed, fut = self._pending.popleft()
        try:
            return fut.result()
        except Exception as err:  # a worker's exception (or a dead worker): name the episode
            raise RuntimeError(
                f"collect({self.task}): episode seed {seed} failed in a worker process: "
                f"{type(err).__name__}: {err}"
            ) from err

    def close(self) -> None:
        # Queued attempts are dropped; running ones finish (at most `workers`) before the pool exits.
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _resume_point(rb: Any, cfg: CollectConfig, meta: Any) -> tuple[int, int]:
    """(episodes stored, attempts made) of a store being resumed; refuses a store of other settings."""
    have = rb.meta.extra or {}
    diffs = [
        f"{k} {have.get(k)!r} != {v!r}"
        for k, v in (("task", cfg.task), ("seed", cfg.seed))
        if have.get(k) != v
    ]
    if list(rb.meta.camera_names) != list(meta.camera_names):
        diffs.append(f"cameras {rb.meta.camera_names} != {meta.camera_names}")
    if float(rb.meta.fps) != float(meta.fps):
        diffs.append(f"fps {rb.meta.fps:g} != {meta.fps:g}")
    if diffs:
        raise ValueError(
            f"{rb.path}: resume=true needs the settings the store was collected with ({'; '.join(diffs)}); "
            "use another out= or overwrite=true"
        )
    n = rb.n_episodes
    if n >= cfg.n_episodes:
        raise ValueError(
            f"{rb.path}: already holds {n} episodes >= n_episodes={cfg.n_episodes}; raise n_episodes to add more"
        )
    # Attempts depend on their seed alone: going on after the last stored seed re-runs at most the
    # failed attempts between it and the interrupt, which fail again the same way.
    last = int(rb.episode_info(n - 1)["seed"]) if n else cfg.seed - 1
    return n, last + 1 - cfg.seed


def _check_joinable(rb: ReplayBuffer, meta: DatasetMeta, task: str, env: Any) -> None:
    """Refuse to append `task`'s episodes to a store recorded with another rate, robot or cameras."""
    have = rb.meta
    diffs = [
        f"{name} {mine!r} vs the store's {theirs!r}"
        for name, mine, theirs in (
            ("fps", meta.fps, have.fps),
            ("robot", meta.robot, have.robot),
            ("joint_names", list(meta.joint_names), list(have.joint_names)),
            ("camera_names", list(meta.camera_names), list(have.camera_names)),
        )
        if mine != theirs
    ]
    if diffs:
        env.close()
        raise ValueError(f"{rb.path}: cannot add task {task!r}: {'; '.join(diffs)}")


def collect(cfg: CollectConfig, into: ReplayBuffer | None = None) -> CollectResult:
    """Collect ``cfg.n_episodes`` expert episodes into a new zarr store (see module docstring).

    into: an open, writable `vla.data.ReplayBuffer` to append the episodes to instead of creating
        ``cfg.out`` (`vla.collect_tasks`: several tasks' demos written straight into one store). Its
        fps, robot, joint names and cameras must be this task's; resume and shards do not apply.
    """
    import sim
    from vla.data import DatasetMeta, ReplayBuffer
    from vla.data.staging import staged_output
    from vla.progress import progress_bar

    # Built in the main process with workers too: validates env_overrides before any worker starts and
    # gives the dataset metadata; it only renders when workers == 1 (renderers are created lazily).
    env_overrides = dict(cfg.env_overrides)
    env = sim.make(cfg.task, **env_overrides)
    if cfg.recovery is not None:
        # A retry takes longer than the demo the task's step limit was set for.
        env_overrides["max_steps"] = int(np.ceil(cfg.recovery.max_steps_scale * env.cfg.max_steps))
        env.close()
        env = sim.make(cfg.task, **env_overrides)
    if not env.cfg.render_images:
        env.close()
        raise ValueError(
            f"CollectConfig.env_overrides: render_images=False stores no images (task {cfg.task})"
        )
    from sim.scene import ARM_JOINTS

    joint_names = list(cfg.joint_names) if cfg.joint_names else [*ARM_JOINTS, "gripper"]
    if tuple(joint_names[: len(ARM_JOINTS)]) != ARM_JOINTS or len(joint_names) != len(ARM_JOINTS) + 1:
        env.close()
        raise ValueError(
            f"CollectConfig.joint_names {joint_names}: the simulated {cfg.robot} has arm joints "
            f"{list(ARM_JOINTS)} + the gripper"
        )
    meta = DatasetMeta(
        fps=float(env.cfg.control_rate_hz),
        robot=cfg.robot,
        joint_names=joint_names,
        camera_names=list(env.cfg.cameras),
        keys={},
        extra={"task": cfg.task, "seed": cfg.seed, "source": "sim scripted expert", **cfg.extra_meta},
    )
    block = shard_range(cfg.n_episodes, cfg.shard, cfg.num_shards)
    sharded = cfg.num_shards > 1
    if sharded:
        meta.extra["shard"] = {
            "index": cfg.shard, "num_shards": cfg.num_shards, "n_episodes": cfg.n_episodes,
            "attempts": [block.start, block.stop],
        }  # fmt: skip
    if into is not None:
        if sharded or cfg.resume:
            env.close()
            raise ValueError("collect(into=...): appends a whole collection; resume and shards do not apply")
        _check_joinable(into, meta, cfg.task, env)
    with contextlib.ExitStack() as stack:
        target = Path(cfg.out)
        if into is None and cfg.overwrite and target.exists():
            # Write the new store beside the old one and swap them only once it is complete: an
            # interrupted overwrite (Ctrl-C, SIGKILL, an error) leaves the old store as it was.
            target = stack.enter_context(staged_output(target, overwrite=True))
        if into is not None:  # appending to the caller's store
            rb = into
            n_saved = n_success = attempts = 0
            submitted = block.start
        elif cfg.resume and target.exists():
            rb = ReplayBuffer.open(target, mode="a")
            n_saved, submitted = _resume_point(rb, cfg, meta)
            n_success = sum(bool(rb.episode_info(i).get("success", True)) for i in range(n_saved))
            attempts = submitted
        else:
            rb = ReplayBuffer.create(target, meta, overwrite=False)
            n_saved = n_success = attempts = 0
            submitted = block.start  # the next attempt's index (its seed: cfg.seed + index)
        max_attempts = cfg.max_attempts or 2 * cfg.n_episodes + 10
        # A shard runs its block of attempts and no more (the merge makes up its failures).
        n_wanted = len(block) if sharded else cfg.n_episodes
        if sharded:
            max_attempts = block.stop
        video_path = Path(cfg.video_path) if cfg.video_path else Path(cfg.out).with_suffix(".mp4")
        video: list[np.ndarray] = []
        # Two per worker keeps every worker busy while the main process writes the previous episode.
        window = 1 if cfg.workers == 1 else 2 * cfg.workers
        t0 = time.perf_counter()
        bar = progress_bar(
            total=n_wanted,
            initial=n_saved,
            desc=f"collect {cfg.task}",
            unit="ep",
            disable=not cfg.progress,
        )
        runner: _Runner | None = None
        try:
            if cfg.workers == 1:
                runner = _SerialRunner(env, sim.make_expert(env), cfg.action_noise, cfg.recovery)
            else:
                runner = _PoolRunner(
                    cfg.task, env_overrides, cfg.workers, noise=cfg.action_noise, recovery=cfg.recovery
                )
            while n_saved < n_wanted:
                # Never more in flight than episodes still needed: if they all succeed we are done, so no
                # attempt runs that one worker would not have run (same n_attempts, never > n_episodes).
                while (
                    runner.in_flight < window
                    and submitted < max_attempts
                    and n_saved + runner.in_flight < n_wanted
                ):
                    # Frames for every attempt that may become one of the first `video_episodes` stored.
                    runner.submit(cfg.seed + submitted, want_video=n_saved < cfg.video_episodes)
                    submitted += 1
                if runner.in_flight == 0 and sharded:
                    break  # the block is done; its failures are made up by merge_shards
                if runner.in_flight == 0:
                    raise RuntimeError(
                        f"collect({cfg.task}): only {n_saved}/{cfg.n_episodes} episodes after {attempts} attempts "
                        f"(expert success {n_success}/{attempts}); raise max_attempts or set keep_failures"
                    )
                ep = runner.next()
                attempts += 1
                n_success += ep.success
                if ep.success or cfg.keep_failures:
                    info = {
                        "task": cfg.task,
                        "seed": ep.seed,
                        "success": ep.success,
                        "length": len(ep.data["action"]),
                    }
                    if ep.provenance:  # an injected failure and/or the expert's re-plans
                        info["recovery"] = ep.provenance
                    rb.add_episode(ep.data, instruction=ep.instruction, info=info)
                    if n_saved < cfg.video_episodes and ep.video is not None:
                        video.extend(ep.video)  # only stored episodes go in the video
                    n_saved += 1
                    bar.update(1)
                bar.set_postfix(success=f"{n_success}/{attempts}")
        finally:
            bar.close()
            if runner is not None:
                runner.close()
            env.close()
    seconds = time.perf_counter() - t0
    written = None
    if video:
        import imageio.v2 as imageio

        video_path.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(video_path, video, fps=env.metadata["render_fps"], macro_block_size=1)
        written = video_path
    return CollectResult(Path(cfg.out), n_saved, attempts, n_success, seconds, written)
