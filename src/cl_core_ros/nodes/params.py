"""Declare node parameters once, with descriptions and ranges, and read them back validated.

Every node lists its parameters as :class:`Param` specs. :func:`declare` declares them with a
``ParameterDescriptor`` (description, integer/float range, read-only where a change at runtime
would make no sense) and returns their values; an out-of-range or wrongly typed value raises
:class:`ParameterError` naming the parameter, so a node refuses to start with a clear message.
"""

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterUninitializedException,
)
from rclpy.node import Node
from rclpy.parameter import Parameter


class ParameterError(ValueError):
    """A parameter has a value the node cannot use."""


@dataclass(frozen=True)
class Param:
    """One parameter: name, default, description, optional range or choices."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = True

    def descriptor(self) -> ParameterDescriptor:
        """Return the ROS descriptor that documents and constrains this parameter."""
        text = self.description
        if self.choices:
            text += ' One of: ' + ', '.join(self.choices) + '.'
        desc = ParameterDescriptor(description=text, read_only=self.read_only)
        if self.min is not None and self.max is not None:
            if isinstance(self.default, bool):
                pass
            elif isinstance(self.default, int):
                desc.integer_range = [IntegerRange(
                    from_value=int(self.min), to_value=int(self.max), step=0)]
            elif isinstance(self.default, float):
                desc.floating_point_range = [FloatingPointRange(
                    from_value=float(self.min), to_value=float(self.max), step=0.0)]
        return desc

    def check(self, value: Any) -> Any:
        """Return ``value`` if this parameter accepts it, else raise :class:`ParameterError`."""
        if isinstance(self.default, float) and isinstance(value, int):
            value = float(value)
        if _string_array(self.default) and isinstance(value, list | tuple):
            if not all(isinstance(item, str) for item in value):
                raise ParameterError(f"parameter '{self.name}' must be a list of strings, "
                                     f'got {value!r}')
            value = list(value)
        if type(value) is not type(self.default):
            raise ParameterError(
                f"parameter '{self.name}' must be {type(self.default).__name__}, "
                f'got {value!r}')
        if self.min is not None and value < self.min or self.max is not None and value > self.max:
            raise ParameterError(
                f"parameter '{self.name}' = {value!r} is out of range [{self.min}, {self.max}]")
        if self.choices and value not in self.choices:
            raise ParameterError(
                f"parameter '{self.name}' = {value!r} is not one of {', '.join(self.choices)}")
        return value


def _string_array(default: Any) -> bool:
    """Return True for a string-array default (a list of str; an empty list is one)."""
    return isinstance(default, list) and all(isinstance(item, str) for item in default)


def declare(node: Node, specs: list[Param]) -> dict[str, Any]:
    """Declare ``specs`` on ``node`` and return ``{name: validated value}``."""
    values = {}
    for spec in specs:
        # A list of strings is declared by its type, since an empty list has none.
        default = Parameter.Type.STRING_ARRAY if _string_array(spec.default) else spec.default
        try:
            param = node.declare_parameter(spec.name, default, spec.descriptor())
        except (InvalidParameterValueException, InvalidParameterTypeException,
                ParameterUninitializedException) as exc:
            raise ParameterError(f"parameter '{spec.name}': {exc}") from exc
        value = param.value
        if value is None and _string_array(spec.default):
            value = list(spec.default)
        values[spec.name] = spec.check(value)
    return values
