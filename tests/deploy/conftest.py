"""Fixtures for the deployment tests: an isolated rclpy context spinning in the background."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ros_bridge.run import RosRuntime


@pytest.fixture
def ros() -> Iterator[RosRuntime]:
    with RosRuntime() as runtime:
        yield runtime
