"""`vla-convert convert=<mapping> src=<source> out=<store.zarr> [--dry-run] [--overwrite]`.

Composes `configs/convert.yaml` + `configs/convert/<mapping>.yaml` (stored under `mapping`; its
`format` picks the importer), runs it and prints the report. Unless it is a dry run, the report is
saved beside the store as `<out>.convert.json` and the resolved config as `<out>.convert.yaml`.
Bad input exits with status 2 and one line naming the file, the topic/field and the timestamp.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, entry

COMMAND = Command(
    prog="vla-convert",
    config="convert",
    summary="import rosbag2 (mcap/sqlite3), ALOHA HDF5, LeRobot v3 and Diffusion Policy datasets into the native zarr format, with a report",
    examples=(
        "vla-convert convert=ur5e_rosbag src=bags/ out=data/teleop.zarr",
        "vla-convert convert=aloha_hdf5 src=aloha_episodes/ out=data/aloha.zarr --dry-run",
        "vla-convert convert=dp_pusht src=pusht_cchi_v7_replay.zarr out=data/pusht.zarr --overwrite",
    ),
    flags={"--dry-run": "dry_run=true", "--overwrite": "overwrite=true", "--no-progress": "progress=false"},
)


def run(cfg: DictConfig) -> int:
    """Run one conversion from a composed config; returns the exit status."""
    from vla.convert.errors import ConvertError
    from vla.convert.formats import convert

    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    src, out = resolved.get("src"), resolved.get("out")
    if not src or not out:
        print(
            "error: src=<source> and out=<store.zarr> are required (see vla-convert --help)", file=sys.stderr
        )
        return 2
    try:
        report = convert(
            str(resolved["format"]),
            src,
            out,
            dict(resolved.get("mapping") or {}),
            overwrite=bool(resolved["overwrite"]),
            dry_run=bool(resolved["dry_run"]),
            progress=bool(resolved["progress"]),
        )
    except (ConvertError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report)
    if not report.dry_run and resolved.get("save_report", True):
        outp = Path(out)
        (outp.parent / f"{outp.name}.convert.json").write_text(report.dumps())
        (outp.parent / f"{outp.name}.convert.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return 0


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    return run(cfg)


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()
