"""Declare node parameters once, with descriptions and ranges, and read them back validated.

Every node lists its parameters as :class:`Param` specs. :func:`declare` declares them with a
``ParameterDescriptor`` (description, integer/float range) and returns their values; an
out-of-range or wrongly typed value raises :class:`ParameterError` naming the parameter, so a
node refuses to start with a clear message.

:func:`on_set` makes the ``runtime`` ones settable while the node runs (``ros2 param set``,
rqt_reconfigure): every change is checked (type, range, choices, then the node's cross-checks
on the values it would have together) and answered with the reason when refused; accepted
changes are handed to the node to apply. A parameter that cannot change while the node runs
is refused by the same callback with the reason it is fixed (e.g. it shapes the model), which
``ros2 param describe`` shows too. (Such parameters are not marked ``read_only`` in their
descriptor: rclpy would then refuse them with a bare "read-only parameter" before any callback
could say why.)
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
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
    """One parameter: name, default, description, optional range or choices.

    ``runtime``: settable while the node runs (see :func:`on_set`); otherwise fixed while it
    runs, and ``fixed`` says why (shown by ``ros2 param describe`` and in refusals).
    """

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    runtime: bool = False
    fixed: str = 'it is read once at start-up'

    @property
    def read_only(self) -> bool:
        """True if the parameter cannot change while the node runs."""
        return not self.runtime

    def descriptor(self) -> ParameterDescriptor:
        """Return the ROS descriptor that documents and constrains this parameter."""
        text = self.description
        if self.choices:
            text += ' One of: ' + ', '.join(self.choices) + '.'
        if self.read_only:
            text += f' Fixed while the node runs ({self.fixed}): set it in the parameters file.'
        else:
            text += ' Settable while the node runs.'
        desc = ParameterDescriptor(description=text)
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
        if isinstance(self.default, list) and not isinstance(value, str):
            try:  # rclpy hands array parameters over as array.array or a list
                value = list(value)
            except TypeError:
                pass
        if _string_array(self.default) and isinstance(value, list):
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


def on_set(node: Node, specs: list[Param], values: dict[str, Any], *,
           apply: Callable[[dict[str, Any]], None],
           cross_check: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Accept changes of the ``runtime`` parameters of ``specs`` while ``node`` runs.

    ``values`` (as returned by :func:`declare`) is kept up to date. For every request the
    parameters are checked one by one (:meth:`Param.check`), then ``cross_check(new_values)``
    may raise :class:`ParameterError` for combinations that do not work; a refusal answers
    ``successful: false`` with the reason and changes nothing. Then ``apply(changes)`` (a dict
    of the changed values) puts them into effect; should it raise, the request is answered
    ``successful: false`` with the error and the node goes on. Parameters not in ``specs`` (e.g.
    ``use_sim_time``) are left to rclpy.
    """
    by_name = {spec.name: spec for spec in specs}

    def callback(parameters) -> SetParametersResult:
        changes: dict[str, Any] = {}
        try:
            for param in parameters:
                spec = by_name.get(param.name)
                if spec is None:
                    continue
                if spec.read_only:
                    raise ParameterError(f"parameter '{spec.name}' cannot change while the node "
                                         f'runs: {spec.fixed}')
                changes[spec.name] = spec.check(param.value)
            if changes and cross_check is not None:
                cross_check({**values, **changes})
        except ParameterError as exc:
            node.get_logger().warning(f'parameter change refused: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        if changes:
            try:
                apply(changes)
            except Exception as exc:  # noqa: BLE001 - no request may leave the callback
                node.get_logger().error(f'parameter change failed while applied: {exc!r}')
                return SetParametersResult(successful=False,
                                           reason=f'could not be applied: {exc!r}')
            values.update(changes)
            node.get_logger().info('parameters changed: ' + ', '.join(
                f'{k} = {v!r}' for k, v in changes.items()))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(callback)
