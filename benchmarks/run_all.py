"""Every benchmark in benchmarks/ in a quick mode, summarised in one table (`make bench`).

    python -m benchmarks.run_all [--only bench_sim bench_safety] [--out-dir benchmarks/results/quick]
        [--timeout 600] [--list]

Runs each `bench_*.py` / `probe_*.py` module in its own process (one failure or hang never stops the
rest; a timeout kills the benchmark's whole process group) with the smallest settings it offers
(`QUICK` below; a benchmark without an entry there is reported as an error, and
`tests/test_run_all.py` fails, so a new benchmark cannot be forgotten). Each writes its JSON into
`--out-dir` (never over the full-size results in benchmarks/results/) and its output to
`<out-dir>/logs/<name>.log`. Prints one table (benchmark, status, seconds, headline figures, JSON
path) and writes it as `<out-dir>/run_all.json`. Exit status 1 when a benchmark failed or timed out.

Prerequisites are built when missing, so a fresh clone runs everything: without a pretrained
encoder at outputs/encoder/sim_siglip (`vla-pretrain-encoder` / `make demo`) a randomly initialised
encoder of the same architecture is saved in `--out-dir` (the same speed; the grounding probe's
accuracy is then chance), and `bench_embed` gets a tiny synthetic dataset when
outputs/demos/pick_cube_1k.zarr is absent. `bench_realtime` runs the scripted expert (pass a
trained run to it with `--checkpoint` yourself). Benchmarks whose optional dependencies are missing
(ROS 2 for bench_ros / bench_realtime, rosbags for bench_convert) are reported as skipped, with
the command to run them. Quick figures show that everything runs and give a first impression;
the README's figures come from each benchmark's default settings.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "quick"
PRETRAINED_ENCODER = ROOT / "outputs" / "encoder" / "sim_siglip"
EMBED_DATASET = ROOT / "outputs" / "demos" / "pick_cube_1k.zarr"


def discover() -> list[str]:
    """The benchmark modules present: benchmarks/bench_*.py and benchmarks/probe_*.py."""
    return sorted(p.stem for pattern in ("bench_*.py", "probe_*.py") for p in HERE.glob(pattern))


# ----------------------------------------------------------------------------- headline figures
def _convert(r: dict) -> str:
    rows = {(x["storage"], x["stage"]): x for x in r["rows"]}
    mcap, sql = rows[("mcap", "import")], rows[("sqlite3", "import")]
    return (
        f"import mcap {mcap['frames_per_s']:.0f} frames/s ({mcap['messages_per_s']:.0f} msgs/s), "
        f"sqlite3 x{sql['speed_vs_mcap_import']:.2f}"
    )


def _embed(r: dict) -> str:
    first, last = r["variants"][0], r["variants"][-1]
    return (
        f"{last['frames_per_s']:.0f} frames/s (direct reads + I/O thread), "
        f"x{last['frames_per_s'] / first['frames_per_s']:.2f} vs before; {r['episodes']} episodes"
    )


def _encoder(r: dict) -> str:
    return (
        f"encode_images b1 {r['obs_per_s_b1']:.0f} obs/s; precompute {r['precompute_frames_per_s']:.0f} "
        f"frames/s; train step encode-every-step / precomputed x{r['online_over_precomputed']:.1f}"
    )


def _experts(r: dict) -> str:
    tasks = r["tasks"]
    ok = ", ".join(f"{t['task']} {round(t['success_rate'] * t['episodes'])}/{t['episodes']}" for t in tasks)
    return f"{ok}; table contacts {sum(t['table_contact_episodes'] for t in tasks)}"


def _policies(r: dict) -> str:
    parts = []
    for x in r["rows"]:
        steps = f" ({x['denoise_steps']} steps)" if x["denoise_steps"] else ""
        parts.append(f"{x['head']}{steps} p50 {x['latency_p50_ms']:.1f} ms")
    return "; ".join(parts)


def _realtime(r: dict) -> str:
    return "; ".join(
        f"{x['mode']} {x['inference_delay_ms']:.0f} ms: {x['successes']}/{x['episodes']} success, "
        f"{x['misses']} missed, chunk p50 {x['chunk_latency_p50_ms']:.0f} ms"
        for x in r["rows"]
    )


def _ros(r: dict) -> str:
    return "; ".join(
        f"{x['cameras']} cam: {x['rate_hz']:.1f} Hz, jitter {x['jitter_ms']:.1f} ms, "
        f"obs->publish p50 {x['obs_to_publish_ms']['p50']:.1f} ms"
        for x in r["variants"]
    )


def _safety(r: dict) -> str:
    new = [x for x in r["rows"] if x["gate"] == "new" and x["goal_fraction"] is not None]
    return "; ".join(
        f"{x['case']} ({x['nthread']} thr) p50 {x['p50_ms']:.1f} ms = {x['p50_fraction']:.1%} of the chunk "
        f"(goal {x['goal_fraction']:.0%})"
        for x in new
    )


def _sampler(r: dict) -> str:
    return "; ".join(
        f"{x['image_hw']}px {x['reads']} w{x['workers']} {x['samples_per_s']:.0f} samples/s"
        for x in r["rows"]
    )


def _sim(r: dict) -> str:
    render = next(x for x in r["render_fps"] if x["size"] == 96 and x["variant"].startswith("decimated"))
    step = next(x for x in r["env_steps_per_s"] if "default" in x["variant"])
    return (
        f"render 96px {render['fps']:.0f} fps (x{render['ratio_to_full']:.1f} full meshes); "
        f"env.step {step['steps_per_s']:.0f}/s; collect {r['collect']['episodes_per_minute']:.1f} episodes/min"
    )


def _stack(r: dict) -> str:
    dev, d = next(iter(r["devices"].items()))
    total = d["obs_to_action"]["variants"]["eager"]["total"]["p50_ms"]
    gate = r["world_model"]["rows"][0]
    return f"{dev}: observation -> gated action p50 {total:.0f} ms; gate {gate['check']} p50 {gate['p50_ms']:.1f} ms"


def _threads(r: dict) -> str:
    cells = {(x["threads"], x["omp_wait_policy"], x["busy"]): x["steps_per_s"] for x in r["rows"]}
    busy = [f"{k[1].split(' ')[0]} {v:.1f}" for k, v in cells.items() if k[0] == 2 and k[2]]
    return "2 threads beside a busy process, steps/s: " + ", ".join(busy)


def _ddp(r: dict) -> str:
    return "training samples/s: " + ", ".join(
        f"{x['processes']} proc {x['samples_per_s']:.0f} ({x['ratio_to_1_process']:.2f}x)" for x in r["rows"]
    )


def _retrieval(r: dict) -> str:
    return "top-1 of 32: " + ", ".join(
        f"{x['camera']} {x['wording'].split()[0]} {x['top1']:.2f}" for x in r["rows"]
    )


def _probe(r: dict) -> str:
    res = "; ".join(
        f"{x['front_end']} {100 * x['target_identified']:.0f}% ({x['mean_err_cm']:.1f} cm)"
        for x in r["results"]
    )
    return f"target identified (chance {100 * r['chance_target_identified']:.0f}%): {res}"


def _probe_text(r: dict) -> str:
    cells = {(x["text_pool"], x["test"]): x["all"] for x in r["rows"]}
    return "held-out instructions read right (task + both referents): " + ", ".join(
        f"{pool} {cells[pool, 'heldout_words']:.2f} / {cells[pool, 'heldout']:.2f} with colour synonyms"
        for pool in ("mean", "attention")
    )


# ----------------------------------------------------------------------------- quick settings
@dataclass(frozen=True)
class Bench:
    """How to run one benchmark quickly.

    args: its quick settings; `{encoder}` / `{dataset}` are replaced by the prepared paths.
    headline: the figures of its JSON worth one table cell.
    json_flag: its option naming the JSON file it writes.
    needs: prerequisites: "ros" (rclpy), "rosbags", "encoder", "dataset" (built when missing).
    timeout_s: seconds before its process group is killed.
    """

    args: tuple[str, ...]
    headline: Callable[[dict], str]
    json_flag: str = "--out"
    needs: tuple[str, ...] = ()
    timeout_s: float = 600.0


def _token_arrays(r: dict) -> str:
    rows = {x["mode"].split()[0]: x for x in r["rows"]}
    parts = [f"{r['tokens_gb']:.2f} GB of tokens"]
    if "ram" in rows:
        parts.append(
            f"ram {rows['ram']['gather_ms_warm']:.2f} ms/batch, {rows['ram']['private_memory_gb']:.2f} GB private"
        )
    if "mmap" in rows:
        m = [x for x in r["rows"] if x["mode"].startswith("mmap")][-1]
        parts.append(f"mmap {m['gather_ms_warm']:.2f} ms warm / {m['gather_ms_cold']:.2f} ms cold")
    return ", ".join(parts)


QUICK: dict[str, Bench] = {
    "bench_convert": Bench(
        ("--seconds", "1", "--size", "32", "--repeats", "1"), _convert, needs=("rosbags",)
    ),
    "bench_embed": Bench(
        ("--dataset", "{dataset}", "--model", "{encoder}", "--episodes", "2", "--batch", "8"),
        _embed,
        needs=("encoder", "dataset"),
    ),
    "bench_encoder": Bench(
        ("--model", "{encoder}", "--repeats", "2", "--batch", "4"), _encoder, needs=("encoder",)
    ),
    "bench_experts": Bench(("--n", "1"), _experts),
    "bench_policies": Bench(
        # The diffusion heads at their default step count (DiffusionConfig.num_inference_steps = 10).
        ("--threads", "1", "--reps", "2", "--steps", "10", "--train-batch", "8", "--train-steps", "1"),
        _policies,
    ),
    "bench_realtime": Bench(
        (
            "--episodes",
            "1",
            "--delays",
            "0",
            "--modes",
            "async+rtc",
            "--out",
            "{out_dir}/bench_realtime_runs",
        ),
        _realtime,
        json_flag="--json",
        needs=("ros",),
    ),
    "bench_ros": Bench(
        ("--seconds", "1", "--warmup", "0.5", "--image-hw", "64", "64"), _ros, needs=("ros",), timeout_s=300
    ),
    # Without the old gate from git history (`--old-ref ''`): that comparison doubles the time.
    "bench_safety": Bench(("--reps", "2", "--reps-k", "1", "--old-ref", ""), _safety),
    "bench_sampler": Bench(
        tuple(
            [
                "--sizes",
                "96",
                "--workers",
                "0",
                "--episodes",
                "2",
                "--frames",
                "20",
                "--batch-size",
                "8",
                "--batches",
                "2",
                "--warmup",
                "1",
            ]
        ),
        _sampler,
    ),
    "bench_sim": Bench(("--frames", "2", "--steps", "2", "--episodes", "1"), _sim),
    "bench_token_arrays": Bench(
        (
            "--dataset",
            "{dataset}",
            "--model",
            "{encoder}",
            "--batches",
            "3",
            "--batch-size",
            "8",
            "--cache-dir",
            "{out_dir}/token_cache",
        ),
        _token_arrays,
        needs=("encoder", "dataset"),
    ),
    "bench_threads": Bench(("--seconds", "1", "--batch-size", "8"), _threads),
    "bench_ddp": Bench(("--steps", "3", "--batch-size", "8"), _ddp),
    "bench_retrieval": Bench(("--scenes", "64", "--encoder", "{encoder}"), _retrieval, needs=("encoder",)),
    "bench_stack": Bench(("--quick", "--encoder", "{encoder}"), _stack, needs=("encoder",)),
    "probe_grounding": Bench(("--quick", "--encoder", "{encoder}"), _probe, needs=("encoder",)),
    "probe_text": Bench(("--quick",), _probe_text),
}

MISSING_HINT = {
    "ros": "ROS 2 (rclpy): pip install -e '.[ros]'",
    "rosbags": "rosbags: pip install -e '.[bags]'",
}


# ----------------------------------------------------------------------------- prerequisites
def prepare_encoder(out_dir: Path) -> tuple[Path, str]:
    """The pretrained default encoder if present, else a random one of the same size (built once)."""
    if (PRETRAINED_ENCODER / "config.json").is_file():
        return PRETRAINED_ENCODER, "pretrained sim_siglip"
    target = out_dir / "untrained_sim_siglip"
    if not (target / "config.json").is_file():
        from vla.pretrain.siglip import (
            BASE_VOCAB,
            SiglipModelSize,
            build_model,
            preprocessing,
            save_checkpoint,
        )
        from vla.pretrain.tokenizer import build_word_tokenizer

        size = SiglipModelSize()
        tok = build_word_tokenizer([BASE_VOCAB])
        save_checkpoint(build_model(size, tok, seed=0), tok, preprocessing(size), target)
    return target, "untrained sim_siglip-sized encoder (no outputs/encoder/sim_siglip)"


def prepare_dataset(out_dir: Path) -> tuple[Path, str]:
    """bench_embed's default dataset if present, else 2 tiny synthetic episodes (2 cameras, 96 px)."""
    if EMBED_DATASET.exists():
        return EMBED_DATASET, f"{EMBED_DATASET.name}"
    target = out_dir / "tiny_embed.zarr"
    if not target.exists():
        from benchmarks.bench_sampler import build_store

        build_store(target, 96, episodes=2, frames=16)
    return target, "tiny synthetic dataset (no outputs/demos/pick_cube_1k.zarr)"


# ----------------------------------------------------------------------------- running
@dataclass
class Row:
    benchmark: str
    status: str
    seconds: float | None = None
    headline: str = ""
    json: str = ""
    log: str = ""
    command: str = ""


class _Placeholders(dict):
    def __missing__(self, key: str) -> str:
        return f"<{key}>"  # shown in a skipped benchmark's command


def _command(name: str, bench: Bench, paths: dict[str, str], json_path: Path) -> list[str]:
    args = [a.format_map(_Placeholders(paths)) for a in bench.args]
    return [sys.executable, "-m", f"benchmarks.{name}", *args, bench.json_flag, str(json_path)]


def _quote(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(c) for c in ["python", *cmd[1:]])


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop the benchmark and every process it started (its own session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "no output"


def run_one(name: str, bench: Bench, paths: dict[str, str], out_dir: Path, timeout_s: float | None) -> Row:
    json_path = out_dir / f"{name}.json"
    log = out_dir / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    json_path.unlink(missing_ok=True)  # never report a previous run's figures
    cmd = _command(name, bench, paths, json_path)
    row = Row(name, "", json=str(json_path), log=str(log), command=_quote(cmd))
    env = dict(os.environ)
    env.setdefault("MUJOCO_GL", "egl")
    env.setdefault("PYOPENGL_PLATFORM", env["MUJOCO_GL"])
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    limit = timeout_s or bench.timeout_s
    t0 = time.perf_counter()
    with log.open("w") as fh:
        fh.write(f"$ {row.command}\n")
        fh.flush()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            rc = None
        except KeyboardInterrupt:
            _kill_group(proc)
            raise
    row.seconds = time.perf_counter() - t0
    if rc is None:
        row.status = f"timeout after {limit:.0f} s"
    elif rc != 0:
        row.status = f"failed (exit {rc}): {_last_line(log)}"
    elif not json_path.is_file():
        row.status = "failed: no JSON written"
    else:
        row.status = "ok"
    if json_path.is_file():
        try:
            row.headline = bench.headline(json.loads(json_path.read_text()))
        except Exception as e:  # a changed JSON layout must not hide the other results
            row.headline = f"(headline unavailable: {type(e).__name__}: {e})"
    else:
        row.json = ""
    return row


def _available(need: str) -> bool:
    module = {"ros": "rclpy", "rosbags": "rosbags"}.get(need)
    return module is None or importlib.util.find_spec(module) is not None


def print_table(rows: list[Row], notes: list[str]) -> None:
    headers = ("benchmark", "status", "seconds", "headline", "JSON")
    cells = [
        (
            r.benchmark,
            r.status,
            "-" if r.seconds is None else f"{r.seconds:.1f}",
            r.headline or "-",
            os.path.relpath(r.json, ROOT) if r.json else "-",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    widths[3] = min(widths[3], 110)  # wrap long headlines rather than widen every row
    widths[1] = min(widths[1], 60)

    def wrap(text: str, width: int) -> list[str]:
        out, line = [], ""
        for word in text.split(" "):
            if line and len(line) + 1 + len(word) > width:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        return [*out, line]

    print()
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for c in cells:
        cols = [wrap(v, w) if i in (1, 3) else [v] for i, (v, w) in enumerate(zip(c, widths))]
        for k in range(max(len(col) for col in cols)):
            print(
                "  ".join((col[k] if k < len(col) else "").ljust(w) for col, w in zip(cols, widths)).rstrip()
            )
    for n in notes:
        print(f"note: {n}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run_all",
        description=__doc__.split("\n\n")[0],
        epilog="Benchmarks: " + ", ".join(discover()),
    )
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    ap.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT, help="JSON, logs and the table (%(default)s)"
    )
    ap.add_argument("--timeout", type=float, default=None, help="seconds per benchmark (default: its own)")
    ap.add_argument("--list", action="store_true", help="print the benchmarks it runs and exit")
    args = ap.parse_args(argv)
    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            ap.error(f"--only: unknown benchmark(s) {unknown}; known: {names}")
        names = [n for n in names if n in args.only]
    out_dir = args.out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    t_start = time.perf_counter()
    paths: dict[str, str] = {"out_dir": str(out_dir)}
    notes: list[str] = []
    prepared: dict[str, str | None] = {}  # need -> None when ready, else why not
    for need, prep, key in (("encoder", prepare_encoder, "encoder"), ("dataset", prepare_dataset, "dataset")):
        if not any(need in QUICK[n].needs for n in names if n in QUICK):
            continue
        try:
            path, what = prep(out_dir)
            paths[key] = str(path)
            prepared[need] = None
            notes.append(f"{need}: {what} ({os.path.relpath(path, ROOT)})")
        except Exception as e:
            prepared[need] = f"{type(e).__name__}: {e}"

    rows: list[Row] = []
    for i, name in enumerate(names, 1):
        bench = QUICK.get(name)
        if bench is None:
            rows.append(Row(name, "error: no quick settings (add it to QUICK in benchmarks/run_all.py)"))
        elif missing := [MISSING_HINT[n] for n in bench.needs if n in MISSING_HINT and not _available(n)]:
            cmd = _quote(_command(name, bench, paths, out_dir / f"{name}.json"))
            rows.append(Row(name, f"skipped: needs {'; '.join(missing)}; then run: {cmd}"))
        elif failed := [f"{n} ({prepared[n]})" for n in bench.needs if prepared.get(n)]:
            rows.append(Row(name, f"skipped: could not prepare {', '.join(failed)}"))
        else:
            print(f"[{i}/{len(names)}] {name} ...", flush=True)
            rows.append(run_one(name, bench, paths, out_dir, args.timeout))
            print(f"[{i}/{len(names)}] {name}: {rows[-1].status} ({rows[-1].seconds:.1f} s)", flush=True)
    wall = time.perf_counter() - t_start

    print_table(rows, notes)
    summary: dict[str, Any] = {
        "wall_s": wall,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - wall)),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "notes": notes,
        "rows": [r.__dict__ for r in rows],
    }
    table = out_dir / "run_all.json"
    table.write_text(json.dumps(summary, indent=2) + "\n")
    bad = [r for r in rows if not (r.status == "ok" or r.status.startswith("skipped"))]
    print(
        f"\n{len(rows)} benchmarks in {wall:.0f} s: {len(rows) - len(bad)} ok or skipped, {len(bad)} failed"
    )
    print(f"wrote {os.path.relpath(table, ROOT)} (logs in {os.path.relpath(out_dir / 'logs', ROOT)})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
