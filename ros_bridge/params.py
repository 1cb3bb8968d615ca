"""Declare a config dataclass as validated ROS 2 parameters and read it back.

Every field becomes a parameter with a description; every later change is checked by building
the dataclass again (its `__post_init__` is the single validation), so a bad `ros2 param set`
is refused with the same message a bad Hydra override gets.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from ros_bridge.config import DESCRIPTIONS, config_fields, from_parameters, to_parameter_value

C = TypeVar("C")

_SCALAR_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


def _descriptor(name: str, default: Any, read_only: bool) -> ParameterDescriptor:
    desc = ParameterDescriptor(name=name, description=DESCRIPTIONS.get(name, ""), read_only=read_only)
    if isinstance(default, tuple):
        # ROS infers an empty list as a byte array and then refuses a string list:
        # arrays are dynamically typed and `from_parameters` checks them instead.
        desc.dynamic_typing = True
    else:
        desc.type = _SCALAR_TYPES[type(default)]
    return desc


def declare_config(node: Node, config: C, read_only: frozenset[str] = frozenset()) -> None:
    """Declare one parameter per field of `config` (its values are the defaults; ROS overrides win).

    Installs a set-parameters callback that refuses any change leaving the config invalid.
    Raises ValueError if the overridden values do not form a valid config.
    """
    cls = type(config)
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        node.declare_parameter(
            f.name, to_parameter_value(value), _descriptor(f.name, value, f.name in read_only)
        )
    read_config(node, cls)  # overrides from the command line are validated here

    def _validate(params: list[Parameter]) -> SetParametersResult:
        values = _current_values(node, cls)
        values.update({p.name: p.value for p in params if p.name in values})
        try:
            from_parameters(cls, values)
        except (ValueError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(_validate)


def _current_values(node: Node, cls: type) -> dict[str, Any]:
    return {name: node.get_parameter(name).value for name in config_fields(cls)}


def read_config(node: Node, cls: type[C]) -> C:
    """The node's current parameter values as a (validated) config dataclass."""
    return from_parameters(cls, _current_values(node, cls))
