"""Policy heads (torch and diffusers only). Never imports `vla`, `sim` or `ros_bridge`."""
