"""`--help` of the Hydra entry points, generated from each command's own config file: its header
comment, config groups with their choices, options with defaults and comments, shorthands, examples."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vla.paths import config_dir

if TYPE_CHECKING:
    from vla.cli.app import Command


def _config_path(name: str) -> Path:
    return Path(config_dir()) / f"{name}.yaml"


def config_groups(config: str) -> list[tuple[str, str]]:
    """(group, default choice) of the primary config's defaults list (not hydra's own groups)."""
    from omegaconf import OmegaConf

    raw = OmegaConf.load(_config_path(config))
    out = []
    for entry in raw.get("defaults") or []:
        if isinstance(entry, str) or entry is None:
            continue
        for k, v in entry.items():
            k = str(k)
            if k.startswith("override ") or k.startswith("hydra") or k == "_self_":
                continue
            out.append((k.split("@")[0].lstrip("/"), "null" if v is None else str(v)))
    return out


def choices(group: str) -> list[str]:
    d = Path(config_dir()) / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def help_text(cmd: Command) -> str:
    """`--help` of one command: its config file's header, options with defaults, groups, examples."""
    text = _config_path(cmd.config).read_text().splitlines()
    header = []
    for line in text:
        if not line.startswith("#"):
            break
        header.append(line[2:].rstrip() if line.startswith("# ") else line[1:].rstrip())
    options, skip = [], False
    for line in text:
        if line.startswith("#") and not options:
            continue
        top = line and not line[0].isspace() and not line.startswith("#")
        if top:
            skip = line.startswith(("defaults:", "hydra:"))
        if not skip and line.strip() and not line.lstrip().startswith("- "):
            options.append("  " + line.rstrip())
    lines = [f"{cmd.prog}: {cmd.summary}", ""]
    extra = [h for h in header if h]
    if extra:
        lines += [*("  " + h for h in extra), ""]
    lines += [f"Usage: {cmd.prog} [key=value ...] [group=choice ...] [--debug] [--cfg]", ""]
    groups = config_groups(cmd.config)
    if groups:
        lines.append("Config groups (group=choice; default in brackets):")
        for g, default in groups:
            lines.append(f"  {g:<10} [{default}]  {' | '.join(choices(g)) or '(none)'}")
        lines.append("")
    lines += [f"Options (defaults from configs/{cmd.config}.yaml; nested keys as a.b=value):", *options, ""]
    if cmd.flags or cmd.prefixes:
        lines.append("Shorthands:")
        lines += [f"  {k:<12} = {v}" for k, v in cmd.flags.items()]
        lines += [f"  {k}<value>  = {v}<value>" for k, v in cmd.prefixes.items()]
        lines.append("")
    if cmd.examples:
        lines += ["Examples:", *("  " + e for e in cmd.examples), ""]
    lines += [
        "  --cfg      print the composed config and exit",
        "  --debug    full tracebacks on errors (or VLA_DEBUG=1)",
        "  +key=value adds a field inside an open mapping (e.g. +env_overrides.max_steps=150)",
    ]
    if cmd.multirun is not None:
        lines.append(
            "  -m         sweep: comma-separated values run one job each (policy=diffusion,transformer)"
        )
    return "\n".join(lines)
