"""vla-bench as a library: latency of every stage of the stack, side by side, on CPU and CUDA.

    from vla.bench import BenchConfig, HeadSpec, run_bench, format_report, write_json
    res = run_bench(cfg)
    print(format_report(res)); write_json(res, "outputs/bench/x/bench.json")

Sections: encoder (batch 1, all cameras), heads per denoising-step count, world-model check (one
chunk, best-of-K), full observation-to-action (encode + head + unnormalize + gate) p50/p99, and
synchronous vs asynchronous execution in the simulator (deadline misses, time to finish, jerk).
"""

from vla.bench.config import BenchConfig, HeadSpec, SimMode
from vla.bench.report import format_report, write_json
from vla.bench.run import run_bench
from vla.bench.timing import Timing, measure

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
