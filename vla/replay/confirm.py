"""The confirmation step before a replay moves a robot.

Motion starts only after an explicit "y"/"yes" at an interactive prompt, or when the caller passed an
explicit "no confirmation" flag (``confirm=false`` / ``--yes``). Without a terminal to ask on and
without that flag the replay is refused: a script or a service must opt out on purpose.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

PROMPT = "Start motion? [y/N] "


class ReplayRefused(RuntimeError):
    """Motion was not confirmed (answered no, or nobody could be asked)."""


def _is_interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def check_confirmable(
    required: bool, ask: Callable[[str], str] | None = None, interactive: bool | None = None
) -> None:
    """Refuse early (before connecting to a robot) when confirmation is required but nobody can answer."""
    if required and ask is None and not (_is_interactive() if interactive is None else interactive):
        raise ReplayRefused(
            "refusing to move the robot: confirmation is required but there is no terminal to ask "
            "'Start motion? [y/N]' on; run interactively or pass confirm=false (--yes) explicitly"
        )


def confirm_motion(
    summary: str,
    *,
    required: bool = True,
    ask: Callable[[str], str] | None = None,
    interactive: bool | None = None,
    out: Callable[[str], None] = print,
) -> None:
    """Print ``summary`` and ask ``Start motion? [y/N]``; raise ReplayRefused unless the answer is yes.

    required: False skips the question (the explicit ``confirm=false`` / ``--yes`` flag).
    ask: reads the answer (default ``input``); tests inject one.
    interactive: whether a person can answer (default: stdin and stdout are TTYs). When False and no
        ``ask`` is given, the replay is refused with a message naming the flag that skips the question.
    """
    out(summary)
    if not required:
        out("[vla-replay] confirmation skipped (confirm=false): starting motion")
        return
    if ask is None:
        check_confirmable(required, ask, interactive)
        ask = input
    try:
        answer = ask(PROMPT)
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise ReplayRefused(
            f"motion not confirmed (answer {answer.strip()!r}); nothing was sent to the robot"
        )
