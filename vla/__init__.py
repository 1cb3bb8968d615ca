"""The VLA stack: frozen VLM encoders, datasets, training/evaluation entry points, runtime and CLI.

`vla` composes the leaf packages `policies` (torch policy heads), `sim` (MuJoCo worlds and the
world-model safety gate) and `ros_bridge` (rclpy node and message conversion). The leaves never
import `vla` or each other.
"""

__version__ = "0.1.0"
