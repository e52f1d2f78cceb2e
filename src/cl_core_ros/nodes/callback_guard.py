"""One guard for every callback of every node: no exception leaves a callback.

rclpy re-raises an exception from a subscription, service, timer or future callback out of
``executor.spin()``, which ends the process, and in a bringup every node in it. Each node wraps
its callbacks with a :class:`CallbackGuard`: an exception nobody expected is counted under its
own reason (``<callback>.<exception type>``), logged with its traceback the first time and then
at most once per ``log_period`` seconds per reason, and the node goes on. A service callback
that failed still answers, with ``success`` false and the error as ``message`` where its
response has those fields. The counts go into the node's ``/diagnostics`` status
(:meth:`CallbackGuard.diagnostic_values`).
"""

from collections import Counter
from collections.abc import Callable
import threading
import time
import traceback
from typing import Any

from rclpy.executors import ExternalShutdownException, ShutdownException

__all__ = ['CallbackGuard', 'error_reason']

# Exceptions that mean "rclpy is shutting down": they must reach the executor.
_SHUTDOWN = (ExternalShutdownException, ShutdownException)


def error_reason(callback: str, exc: BaseException) -> str:
    """Return the counter key of ``exc`` raised in ``callback``, e.g. ``image_raw.cv2.error``."""
    kind = type(exc)
    module = '' if kind.__module__ == 'builtins' else f'{kind.__module__}.'
    return f'{callback}.{module}{kind.__qualname__}'


class CallbackGuard:
    """Wraps a node's callbacks so that an unexpected exception is counted, logged, survived.

    Args:
        logger: the node's logger (``node.get_logger()``).
        log_period: seconds between two log lines of one reason.

    """

    def __init__(self, logger, *, log_period: float = 5.0):
        self._logger = logger
        self._log_period = log_period
        self._lock = threading.Lock()
        self._last_log: dict[str, float] = {}
        self._unlogged: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def record(self, callback: str, exc: BaseException) -> str:
        """Count ``exc`` raised in ``callback`` and log it (throttled); return its reason."""
        reason = error_reason(callback, exc)
        now = time.monotonic()
        with self._lock:
            self.errors[reason] += 1
            last = self._last_log.get(reason)
            if last is not None and now - last < self._log_period:
                self._unlogged[reason] += 1
                return reason
            self._last_log[reason] = now
            skipped, self._unlogged[reason] = self._unlogged[reason], 0
        text = f'{callback}: unexpected {type(exc).__name__}: {str(exc)[:300]} (the node goes on'
        if last is None:
            trace = ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self._logger.error(f'{text}; first occurrence)\n{trace.rstrip()}')
        else:
            self._logger.error(f'{text}; {skipped + 1} since the last report, '
                               f'{self.errors[reason]} in all)')
        return reason

    def subscription(self, name: str, callback: Callable[[Any], None]) -> Callable[[Any], None]:
        """Guard a subscription (or future done) callback taking one argument."""
        def guarded(msg):
            try:
                callback(msg)
            except _SHUTDOWN:
                raise
            except Exception as exc:  # noqa: BLE001 - the point of the guard
                self.record(name, exc)
        return guarded

    done = subscription  # a future's done callback takes the future

    def timer(self, name: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Guard a timer callback (no arguments)."""
        def guarded():
            try:
                callback()
            except _SHUTDOWN:
                raise
            except Exception as exc:  # noqa: BLE001 - the point of the guard
                self.record(name, exc)
        return guarded

    def service(self, name: str, callback: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """Guard a service callback: on an exception it still returns ``response``."""
        def guarded(request, response):
            try:
                return callback(request, response)
            except _SHUTDOWN:
                raise
            except Exception as exc:  # noqa: BLE001 - the point of the guard
                self.record(name, exc)
                if hasattr(response, 'success'):
                    response.success = False
                if hasattr(response, 'message'):
                    response.message = f'internal error ({type(exc).__name__}: {str(exc)[:200]})'
                return response
        return guarded

    def diagnostic_values(self) -> dict[str, int]:
        """Return ``{'callback_errors': total, 'callback_errors.<reason>': count, ...}``."""
        with self._lock:
            counts = dict(self.errors)
        return {'callback_errors': sum(counts.values()),
                **{f'callback_errors.{k}': v for k, v in sorted(counts.items())}}
