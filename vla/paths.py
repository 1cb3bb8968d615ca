"""Where the project's Hydra configs live (entry points only; library code never reads them)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"


def config_dir() -> str:
    """Absolute path of `configs/`, with a clear error when the package was installed without it."""
    if not CONFIG_DIR.is_dir():
        raise FileNotFoundError(
            f"Hydra config directory not found at {CONFIG_DIR}. Install the project in editable mode "
            "(`pip install -e .`, as `make setup` does) so entry points can find `configs/`."
        )
    return str(CONFIG_DIR)
