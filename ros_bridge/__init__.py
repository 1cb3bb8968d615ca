"""rclpy nodes and numpy <-> ROS 2 message conversion.

Imports without torch. Never imports `vla`, `policies` or `sim`.
"""
