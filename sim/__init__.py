"""MuJoCo worlds, language tasks, scripted experts and the world-model safety gate.

Imports without torch. Never imports `vla`, `policies` or `ros_bridge`.
"""
