"""Test-wide settings: headless rendering, loopback-only ROS 2 on a per-run domain, few threads."""

from __future__ import annotations

import os
import signal
import tempfile

# A shell without job control (`cmd &` in a script, nohup) starts background jobs with SIGINT
# ignored, and Python keeps it ignored: the Ctrl-C tests would never see their interrupt. Restore
# Python's handler; processes the tests start then begin with the default disposition again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
# ROS 2 traffic stays on this machine, on a domain no other run uses.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(100 + os.getpid() % 100))
# Hub access is never allowed in tests.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Caches (encoded grounding scenes) go to this run's temporary folder, not the checkout's outputs/.
os.environ.setdefault("VLA_CACHE_DIR", tempfile.mkdtemp(prefix="vla-test-cache-"))
