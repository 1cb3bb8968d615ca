"""World-model safety gate: every action chunk is simulated in MuJoCo before it moves anything.

    from sim.safety import SafetyGate, load_safety_config
    gate = SafetyGate(load_safety_config("configs/safety/ur5e_default.yaml"))
    decision = gate.filter(q, qd, chunk)     # decision.actions: safe prefix (K, 7) or a hold command

Modules: ``config`` (limits), ``world_model`` (MuJoCo model + sync), ``checks`` (one function per
check), ``verdict`` (results), ``gate`` (safe prefix, hold, best-of-K), ``scoring`` (best-of-K scores).
"""

from sim.safety.config import SafetyConfig, load_safety_config, safety_config_from_dict
from sim.safety.gate import GateDecision, GateStats, SafetyGate, limit_target_steps
from sim.safety.scoring import task_progress_score
from sim.safety.verdict import CHECKS, Verdict, Violation
from sim.safety.world_model import WorldModel

__all__ = [
    "CHECKS",
    "GateDecision",
    "GateStats",
    "SafetyConfig",
    "SafetyGate",
    "Verdict",
    "Violation",
    "WorldModel",
    "limit_target_steps",
    "load_safety_config",
    "safety_config_from_dict",
    "task_progress_score",
]
