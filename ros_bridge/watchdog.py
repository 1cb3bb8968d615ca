"""Why the policy node must hold instead of acting: pure logic, no ROS graph.

Ages are measured from the monotonic time each message was *received*, not from header stamps:
the robot's clock (or a simulator's) need not agree with the policy machine's, and what matters
for safety is how old our newest information is.
"""

from __future__ import annotations

from collections.abc import Mapping


def hold_reasons(
    now: float,
    *,
    joint_state_received: float | None,
    images_received: Mapping[str, float | None],
    max_age_s: float,
    estop: bool,
    instruction: str,
) -> list[str]:
    """All reasons to hold right now (empty list: inputs are fine), in a stable order.

    Reasons carry no ages, so the same condition gives the same text tick after tick (the node
    publishes a hold only when the reason changes; ages go to the status topic instead).
    """
    reasons: list[str] = []
    if estop:
        reasons.append("e-stop engaged")
    if joint_state_received is None:
        reasons.append("no joint state received yet")
    elif now - joint_state_received > max_age_s:
        reasons.append(f"stale joint state (older than {max_age_s:.3f} s)")
    for camera, received in images_received.items():
        if received is None:
            reasons.append(f"no image from camera '{camera}' yet")
        elif now - received > max_age_s:
            reasons.append(f"stale image from camera '{camera}' (older than {max_age_s:.3f} s)")
    if not instruction.strip():
        reasons.append("empty instruction")
    return reasons
