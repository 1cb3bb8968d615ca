"""Fixtures for the recorder tests: an isolated rclpy context per test (domain from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ros_bridge.run import RosRuntime


@pytest.fixture
def ros() -> Iterator[RosRuntime]:
    with RosRuntime() as runtime:
        yield runtime
