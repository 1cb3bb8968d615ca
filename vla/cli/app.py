"""How every Hydra entry point (`vla-collect`, `vla-train`, `vla-eval`, ...) starts, fails and stops.

`run_command(command, body, argv)` composes `configs/<command.config>.yaml` with the `key=value`
arguments through Hydra's compose API (no output directory, no working-directory change, no log
file: the command itself says where it writes) and calls `body(cfg, overrides)`. Around it:

- `--help`: what the command does, its options with defaults (read from its own config file), its
  config groups with their choices and examples; `--cfg` prints the composed config and exits.
- bad arguments (unknown key, unknown group option, missing required value, `+key=` that names no
  option) and every exception of the body are one line `<prog>: error: ...` with exit status 2
  (1 for unexpected errors); `--debug` or `VLA_DEBUG=1` shows the full traceback instead.
- Ctrl-C is `<prog>: interrupted[: what was kept]` with status 130; a closed pipe (`| head`) ends
  quietly.
- warnings a user cannot act on (transformers' config notes and weight-loading bars, PyOpenGL's
  accelerate notice) are silenced; the project's own `logging` goes to stdout as `[name] message`.

`-m/--multirun` (sweeps) is handed to Hydra's own runner for commands that support it.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla.cli.help import choices, config_groups, help_text
from vla.paths import config_dir

# The exit status of a refusal (bad input, missing file, ...), as argparse uses.
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# Exceptions that mean "the input is wrong" (status 2); anything else is unexpected (status 1).
_USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, LookupError, OSError)
_HYDRA_FLAGS = ("-m", "--multirun")
_PROJECT_PACKAGES = ("vla", "sim", "policies", "ros_bridge")


class UsageError(ValueError):
    """A refusal that is already one complete sentence (printed as is, exit status 2)."""


@dataclass(frozen=True)
class Command:
    """What `--help` says about one entry point and how its arguments are read.

    prog: the console script (`vla-eval`). config: the primary config under configs/ (`eval`).
    summary: one sentence. examples: command lines shown under "Examples". flags: shorthand
    arguments -> overrides (`--yes` -> `ros.confirm=false`). prefixes: top-level shorthands for a
    nested key (`speed=` -> `ros.speed=`). multirun: `hydra.main`-decorated callable for `-m` sweeps.
    """

    prog: str
    config: str
    summary: str
    examples: tuple[str, ...] = ()
    flags: Mapping[str, str] = field(default_factory=dict)
    prefixes: Mapping[str, str] = field(default_factory=dict)
    multirun: Callable[[], Any] | None = None


def debug_enabled(argv: Sequence[str] = ()) -> bool:
    return "--debug" in argv or os.environ.get("VLA_DEBUG", "") not in ("", "0", "false")


class _ProjectLogHandler(logging.StreamHandler):
    """The stdout handler `quiet_third_party` installs once (recognised by its class)."""


def quiet_third_party() -> None:
    """Silence output nobody can act on; keep the project's own INFO logs on stdout."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    root = logging.getLogger()
    if not any(isinstance(h, _ProjectLogHandler) for h in root.handlers):
        h = _ProjectLogHandler(sys.stdout)
        h.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
        root.addHandler(h)
    root.setLevel(logging.WARNING)
    for name in ("vla", "sim", "policies", "ros_bridge"):
        logging.getLogger(name).setLevel(logging.INFO)
    # PyOpenGL logs "No OpenGL_accelerate module loaded" at INFO on import.
    logging.getLogger("OpenGL").setLevel(logging.ERROR)
    import warnings

    # torchvision's "video_reader backend" / image-extension notes arrive through transformers imports.
    warnings.filterwarnings("ignore", module=r"torchvision(\..*)?")
    # The environment variables above take effect when transformers is imported; only an already
    # imported one needs telling (importing it here would cost every command ~0.7 s).
    if "transformers" in sys.modules:
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        except Exception:  # an old transformers without these: its noise is only cosmetic
            pass


# ------------------------------------------------------------------------------------ composition


def _flat_keys(node: Any) -> list[str]:
    """Every key of a config as dotted paths (`train.steps`), interpolations left unresolved."""
    from omegaconf import OmegaConf

    def walk(d: Any, prefix: str) -> list[str]:
        out = []
        for k, v in d.items() if isinstance(d, dict) else ():
            out.append(f"{prefix}{k}")
            out += walk(v, f"{prefix}{k}.")
        return out

    return walk(OmegaConf.to_container(node, resolve=False), "")


def _suggest(key: str, known: Sequence[str]) -> str:
    # Not the key's own parents: `env_overrides` is no answer to `env_overrides.max_steps`.
    known = [k for k in known if not key.startswith(k + ".")]
    close = difflib.get_close_matches(key, known, n=2, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def _compose(cmd: Command, overrides: list[str]) -> Any:
    """The composed config (hydra node removed), or UsageError with one line saying what is wrong."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf import DictConfig, OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3", job_name=cmd.prog):
        base = compose(cmd.config, overrides=[])
        known = [k for k in _flat_keys(base) if not k.startswith("hydra")]
        known += [g for g, _ in config_groups(cmd.config)]
        groups = [g for g, _ in config_groups(cmd.config)]
        for o in overrides:
            key = o.split("=", 1)[0]
            _check_key(cmd, key, base, known, groups)
            if key.startswith("+") and not key.startswith("++"):
                # `+key=v` adds a key; only inside an open mapping (env_overrides, policy_overrides) is
                # that meaningful: elsewhere it is a typo that the command would silently ignore.
                name = key[1:]
                if name in groups:
                    raise UsageError(
                        f"{name!r} is a config group of {cmd.prog}: write {name}=<choice> without '+'"
                    )
                parent = name.rsplit(".", 1)[0] if "." in name else ""
                node = OmegaConf.select(base, parent) if parent else None
                if name in known or not isinstance(node, DictConfig):
                    raise UsageError(
                        f"unknown option {name!r}{_suggest(name, known)}; `+` only adds a field inside a "
                        f"mapping such as env_overrides (see {cmd.prog} --help)"
                    )
        # A plain field named like a config directory (vla-demo's `task: pick_cube`, `policy:`): Hydra
        # would read `task=place_cube` as a choice of configs/task/ that the command does not load and
        # refuse it, so such overrides are set on the composed config instead.
        shadowed = [o for o in overrides if _shadows_group(o, base, groups)]
        try:
            cfg = compose(
                cmd.config, overrides=[o for o in overrides if o not in shadowed], return_hydra_config=True
            )
            if shadowed:
                from hydra.core.override_parser.overrides_parser import OverridesParser

                parser = OverridesParser.create()
                for o in shadowed:
                    ov = parser.parse_override(o)
                    OmegaConf.update(cfg, ov.key_or_group, ov.value(), merge=False)
        except (HydraException, OmegaConfBaseException) as e:
            raise UsageError(_compose_message(cmd, str(e), known)) from None
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
    return cfg


def _shadows_group(override: str, base: Any, groups: Sequence[str]) -> bool:
    """Whether `key=value` sets a plain top-level field of `base` whose name is also a directory of
    configs/ that is not one of the command's own config groups."""
    from omegaconf import DictConfig, ListConfig

    key = override.split("=", 1)[0]
    if "=" not in override or key.startswith(("+", "~")) or "." in key or "@" in key or key in groups:
        return False
    return (
        key in base
        and not isinstance(base[key], (DictConfig, ListConfig))
        and (Path(config_dir()) / key).is_dir()
    )


def compose_command(cmd: Command, overrides: list[str]) -> Any:
    """`cmd`'s config composed with `overrides` and resolved, as its entry point would see it (for an
    entry point that runs another one's body in process, e.g. vla-dagger training with vla-train's)."""
    cfg = _compose(cmd, list(overrides))
    _resolve(cfg)
    return cfg


def _check_key(cmd: Command, key: str, base: Any, known: Sequence[str], groups: Sequence[str]) -> None:
    """Refuse `key=value` for a key the command does not have, before Hydra misreads it (e.g. a
    config group of another command: `safety=false` would select a group)."""
    from omegaconf import DictConfig, OmegaConf

    name = key.lstrip("+~")
    top = name.split(".")[0].split("@")[0]
    if key.startswith(("+", "~")) or top == "hydra" or top in groups or name in known:
        return
    parent = name.rsplit(".", 1)[0] if "." in name else ""
    hint = _suggest(name, known)
    if not hint and parent and isinstance(OmegaConf.select(base, parent), DictConfig):
        raise UsageError(f"{parent} has no field {name.rsplit('.', 1)[1]!r} yet: add it with +{name}=<value>")
    raise UsageError(
        f"unknown option {name!r}{_suggest(name, known)} (see {cmd.prog} --help for the options)"
    )


def _compose_message(cmd: Command, msg: str, known: Sequence[str]) -> str:
    m = re.search(r"Could not override '([^']+)'", msg) or re.search(r"Key '([^']+)' is not in struct", msg)
    if m:
        key = m.group(1)
        return f"unknown option {key!r}{_suggest(key, known)} (see {cmd.prog} --help for the options)"
    m = re.search(r"Could not find '([^/']+)/([^']+)'", msg)
    if m:
        group, name = m.groups()
        return f"unknown {group} {name!r}; choose one of: {', '.join(choices(group)) or '(none)'}"
    m = re.search(r"Could not append to config\. An item is already at '([^']+)'", msg)
    if m:
        return f"{m.group(1)!r} is already an option: write {m.group(1)}=<value> without the '+'"
    first = " ".join(line.strip() for line in msg.strip().splitlines()[:2])
    return f"bad arguments: {first} (see {cmd.prog} --help)"


def _resolve(cfg: Any) -> None:
    """Resolve every value now, so a missing required value is one line before any work starts."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or str(e)
        raise UsageError(f"missing required option {key}=<value>") from None
    except InterpolationResolutionError as e:
        raise UsageError(f"cannot resolve config value: {e}".splitlines()[0]) from None


# ---------------------------------------------------------------------------------------- running


def _expand(cmd: Command, argv: Sequence[str]) -> list[str]:
    out = []
    for a in argv:
        a = cmd.flags.get(a, a)
        for short, full in cmd.prefixes.items():
            if a.startswith(short):
                a = full + a[len(short) :]
        out.append(a)
    return out


def error_line(prog: str, exc: BaseException) -> tuple[str, int]:
    """The one line and exit status for an exception raised by a command's body."""
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, UsageError):
        return f"{prog}: error: {msg}", EXIT_USAGE
    if isinstance(exc, KeyError) and exc.args:
        a = exc.args[0]
        msg = a if isinstance(a, str) and " " in a else f"missing key {a!r}"
    first = msg.splitlines()[0] if msg.count("\n") > 3 else " ".join(msg.split())
    # The project's own error classes (StaleEmbeddingsError, EncoderLoadError, ...) are deliberate
    # refusals with a message written for the user, whatever builtin they derive from.
    if isinstance(exc, _USER_ERRORS) or type(exc).__module__.split(".")[0] in _PROJECT_PACKAGES:
        return f"{prog}: error: {first}", EXIT_USAGE
    return (
        f"{prog}: unexpected error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
        1,
    )


def _closed_pipe() -> int:
    # Python's recommended handling: point stdout at devnull so the interpreter's final flush is quiet.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


def guarded(prog: str, fn: Callable[[], int | None], debug: bool = False) -> int:
    """Run `fn` with the project's error, interrupt and closed-pipe handling; returns the exit status."""
    try:
        code = fn()
        sys.stdout.flush()
        return int(code or 0)
    except BrokenPipeError:
        return _closed_pipe()
    except KeyboardInterrupt as e:
        if debug:
            traceback.print_exc()
        detail = str(e).strip()
        print(f"{prog}: interrupted{': ' + detail if detail else ''}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code if e.code.startswith(prog) else f"{prog}: error: {e.code}", file=sys.stderr)
            return EXIT_USAGE
        return int(e.code or 0)
    except Exception as e:
        if debug:
            traceback.print_exc()
        line, code = error_line(prog, e)
        with contextlib.suppress(BrokenPipeError):
            print(line, file=sys.stderr, flush=True)
        return code


def run_command(
    cmd: Command, body: Callable[[Any, list[str]], int | None], argv: Sequence[str] | None = None
) -> int:
    """Parse `argv` (default sys.argv[1:]), compose, run `body(cfg, overrides)`; returns the status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(args)
    args = [a for a in args if a != "--debug"]
    if any(a in ("-h", "--help") for a in args):
        print(help_text(cmd))
        return 0
    quiet_third_party()
    if any(a in _HYDRA_FLAGS for a in args):
        if cmd.multirun is None:
            print(
                f"{cmd.prog}: error: {cmd.prog} runs one job; -m (sweeps) is for vla-train, vla-collect and vla-eval",
                file=sys.stderr,
            )
            return EXIT_USAGE
        sys.argv = [cmd.prog, *_expand(cmd, args)]
        return guarded(cmd.prog, cmd.multirun, debug)
    show_cfg = "--cfg" in args
    args = _expand(cmd, [a for a in args if a not in ("--cfg", "job")])
    # `~key` (Hydra's deletion of a config key) is the one override without a value.
    bad = [a for a in args if a.startswith("-") or ("=" not in a and not a.startswith("~"))]
    if bad:
        print(
            f"{cmd.prog}: error: unexpected argument {bad[0]!r}: options are key=value "
            f"(see {cmd.prog} --help)",
            file=sys.stderr,
        )
        return EXIT_USAGE

    def go() -> int | None:
        from omegaconf import OmegaConf

        cfg = _compose(cmd, args)
        if show_cfg:
            print(OmegaConf.to_yaml(cfg, resolve=True))
            return 0
        _resolve(cfg)
        return body(cfg, args)

    return guarded(cmd.prog, go, debug)


def entry(cmd: Command, body: Callable[[Any, list[str]], int | None]) -> Callable[..., None]:
    """A console-script `main(argv=None)` that exits with `run_command`'s status."""

    def main(argv: Sequence[str] | None = None) -> None:
        sys.exit(run_command(cmd, body, argv))

    main.__doc__ = f"`{cmd.prog}`: {cmd.summary}"
    return main
