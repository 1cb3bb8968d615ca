"""`make bench` (`python -m benchmarks.run_all`): its CLI starts, and it runs every benchmark present."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from benchmarks import run_all

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_works() -> None:
    res = _cli("--help")
    assert res.returncode == 0, res.stderr
    assert "--only" in res.stdout and "bench_safety" in res.stdout


def test_it_runs_exactly_the_benchmark_files_present() -> None:
    files = sorted(
        p.stem for pattern in ("bench_*.py", "probe_*.py") for p in (ROOT / "benchmarks").glob(pattern)
    )
    assert "bench_sim" in files
    res = _cli("--list")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == files
    # Every benchmark has quick settings (a new one without them is an error in the table) and no
    # settings are left over for a benchmark that is gone.
    assert sorted(run_all.QUICK) == files


def test_quick_settings_name_options_the_benchmarks_have() -> None:
    """Each option passed by run_all is declared by the benchmark's own argparse."""
    for name, bench in run_all.QUICK.items():
        src = (ROOT / "benchmarks" / f"{name}.py").read_text()
        declared = set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", src))
        used = {a for a in (*bench.args, bench.json_flag) if a.startswith("--")}
        assert used <= declared, f"{name}: run_all passes {sorted(used - declared)}, not options of it"


def test_unknown_benchmark_is_refused() -> None:
    res = _cli("--only", "bench_nothing")
    assert res.returncode == 2 and "unknown benchmark" in res.stderr
