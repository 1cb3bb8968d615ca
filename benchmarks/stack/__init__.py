"""vla-bench as a library: latency of every stage of the stack, side by side, on CPU and CUDA.

    from benchmarks.stack import BenchConfig, HeadSpec, run_bench, format_report, write_json
    res = run_bench(cfg)
    print(format_report(res)); write_json(res, "outputs/bench/x/bench.json")

Sections: encoder (batch 1, all cameras), heads per denoising-step count, world-model check (one
chunk, best-of-K), full observation-to-action (encode + head + unnormalize + gate) p50/p99, and
synchronous vs asynchronous execution in the simulator (deadline misses, time to finish, jerk).
"""

from benchmarks.stack.config import BenchConfig, HeadSpec, SimMode
from benchmarks.stack.report import format_report, write_json
from benchmarks.stack.run import run_bench
from benchmarks.stack.timing import Timing, measure

__all__ = [
    "BenchConfig",
    "HeadSpec",
    "SimMode",
    "Timing",
    "format_report",
    "measure",
    "run_bench",
    "write_json",
]
