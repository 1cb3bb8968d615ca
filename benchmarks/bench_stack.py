"""The whole stack stage by stage (encoder, heads, observation -> action, gate, sync vs async in the
simulator): `vla-bench` (`benchmarks/stack/`, configs/bench.yaml) as a benchmark script, so
`make bench` runs it with the others.

    python -m benchmarks.bench_stack [--quick] [--encoder DIR] [--checkpoint RUN] [--out bench.json]

Writes the JSON of `vla-bench` (and its table on stdout); `vla-bench key=value ...` has every option.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny heads, few reps, short episodes")
    p.add_argument(
        "--encoder", default=None, help="encoder checkpoint dir (default: configs/encoder/sim_siglip)"
    )
    p.add_argument(
        "--checkpoint", default=None, help="a trained run: time (and run) it instead of random weights"
    )
    p.add_argument(
        "--out", default=None, help="bench.json path (default outputs/bench/<timestamp>/bench.json)"
    )
    args = p.parse_args(argv)
    from vla.cli.app import run_command
    from vla.cli.bench import COMMAND, run

    overrides = [f"quick={str(args.quick).lower()}"]
    overrides += [f"encoder.model={args.encoder}"] if args.encoder else []
    overrides += [f"checkpoint={args.checkpoint}"] if args.checkpoint else []
    overrides += [f"out={args.out}"] if args.out else []
    return run_command(COMMAND, lambda cfg, _: (run(cfg), 0)[1], overrides)


if __name__ == "__main__":
    sys.exit(main())
