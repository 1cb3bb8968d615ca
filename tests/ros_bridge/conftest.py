"""Fixtures for real rclpy nodes on loopback: one isolated context per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ros_bridge.run import RosRuntime


@pytest.fixture
def ros() -> Iterator[RosRuntime]:
    """A fresh rclpy context (domain from tests/conftest.py) spinning in a background thread."""
    with RosRuntime() as runtime:
        yield runtime
