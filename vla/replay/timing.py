"""The world-model gate re-timed for a replay at ``speed`` x the recorded rate.

A replay at speed s sends one action every ``1 / (fps * s)`` s; the gate must simulate that motion
(velocities and accelerations scale with s), not the recorded rate's.
"""

from __future__ import annotations

import dataclasses

from sim.safety import SafetyConfig


def safety_config_at_rate(cfg: SafetyConfig, control_rate_hz: float) -> SafetyConfig:
    """``cfg`` re-timed for actions executed at ``control_rate_hz``.

    The physics step is shrunk (never grown) so that a control period is a whole number of substeps.
    """
    n = max(1, round(1.0 / (control_rate_hz * cfg.timestep)))
    if 1.0 / (control_rate_hz * n) > cfg.timestep * (1 + 1e-9):
        n += 1
    return dataclasses.replace(
        cfg, control_rate_hz=float(control_rate_hz), timestep=1.0 / (control_rate_hz * n)
    )
