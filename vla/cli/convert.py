"""`vla-convert convert=<mapping> src=<source> out=<store.zarr> [--dry-run] [--overwrite]`.

Composes `configs/convert.yaml` + `configs/convert/<mapping>.yaml` (stored under `mapping`; its
`format` picks the importer), runs it and prints the report. Unless it is a dry run, the report is
saved beside the store as `<out>.convert.json` and the resolved config as `<out>.convert.yaml`.
Bad input exits with status 2 and one line naming the file, the topic/field and the timestamp.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from vla.paths import config_dir

# Flag spellings people type out of habit -> Hydra overrides.
_FLAGS = {"--dry-run": "dry_run=true", "--overwrite": "overwrite=true", "--no-progress": "progress=false"}


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


@hydra.main(config_path=config_dir(), config_name="convert", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    code = run(cfg)
    if code:
        sys.exit(code)


def main() -> None:
    sys.argv = [_FLAGS.get(a, a) for a in sys.argv]
    _hydra_main()


if __name__ == "__main__":
    main()
