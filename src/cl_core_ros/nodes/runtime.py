"""What every cl_core_ros executable shares: a clean main() and the package's share directory.

Shutdown: SIGINT and SIGTERM ask for a stop (:mod:`~cl_core_ros.nodes.stop_signals`; one that
comes before the nodes are built ends the process at once, and a second one while stopping is
ignored, as ``ros2 launch`` and a terminal may both send one). The executor then stops first,
then every node's own threads that use rclpy (``close()``), then the nodes are destroyed and
only then the rclpy context shuts down, so nothing calls rclpy on a context that has gone.
Should that take longer than :data:`SHUTDOWN_GRACE_S` (a DDS participant that does not let
go), the process exits anyway with a warning: what the learner acknowledged is already on disk.
The executables then leave with :func:`exit_process`, skipping the interpreter's own teardown of
torch and Fast DDS (about 3 s on a loaded 2-core machine, for nothing left to do).
"""

from collections.abc import Callable
import logging
import os
from pathlib import Path
import sys
import threading
import traceback

import rclpy
from rclpy.executors import (
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    SingleThreadedExecutor,
)
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from cl_core_ros.core.heap import fix_heap_thresholds
from cl_core_ros.core.state_store import StateStoreError
from cl_core_ros.nodes.compat import shutdown_executor
from cl_core_ros.nodes.params import ParameterError
from cl_core_ros.nodes.stop_signals import (
    process_stop_request,
    say,
    SHUTDOWN_GRACE_S,
    StopRequest,
)


def share_dir() -> Path:
    """Return the installed share/cl_core_ros directory (ament index first, then sys.prefix)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('cl_core_ros'))
    except (ImportError, LookupError, OSError, ValueError):
        return Path(os.environ.get('VIRTUAL_ENV') or sys.prefix) / 'share' / 'cl_core_ros'


def set_timer_period(timer, seconds: float) -> None:
    """Give a running rclpy timer a new period, counted from now."""
    timer.timer_period_ns = int(seconds * 1e9)
    timer.reset()


def exit_process(status: int) -> None:
    """End the process now with ``status``, after flushing its output (for executables).

    Call it only once rclpy has shut down and nothing is left to store: it skips ``atexit``
    handlers and the interpreter's teardown of the loaded libraries.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


SPIN_POLL_S = 0.2
"""The executor thread looks at the stop request this often (between callbacks)."""


def spin_guarded(executor, should_stop: Callable[[], bool] | None = None) -> None:
    """Spin until shutdown (or ``should_stop()``); an exception escaping a callback is logged.

    Every node guards its own callbacks (:mod:`cl_core_ros.nodes.callback_guard`); this is the
    last line for what rclpy raises outside them, so that in a bringup one node's failure never
    ends the others. With ``should_stop`` the executor is spun one callback at a time and the
    loop ends by itself once it turns true (see :func:`_spin`).
    """
    while True:
        try:
            if should_stop is None:
                executor.spin()
                return
            while not should_stop():
                executor.spin_once(timeout_sec=SPIN_POLL_S)
            return
        except (KeyboardInterrupt, ExternalShutdownException, ShutdownException):
            raise
        except Exception as exc:  # noqa: BLE001 - the other nodes must go on
            rclpy.logging.get_logger('cl_core_ros').error(
                f'executor: unexpected {type(exc).__name__}: {str(exc)[:300]} (spinning on)',
                throttle_duration_sec=5.0)


def _spin(executor, stop: StopRequest, failure: list) -> None:
    """Spin ``executor`` until a stop is requested; rclpy shutting down is a stop request too.

    The thread stops spinning by itself rather than having the executor shut down under it:
    rclpy's ``Executor.shutdown`` destroys the executor's guard condition at once, while a
    spinning thread may still be waiting on it.
    """
    try:
        spin_guarded(executor, lambda: stop.requested)
    except (ExternalShutdownException, ShutdownException):
        stop.request('rclpy was shut down')
    except BaseException as exc:  # noqa: BLE001 - reported by the main thread, then exit 1
        failure.append((exc, traceback.format_exc()))
        stop.request(f'executor failed: {exc!r}')


def _close(nodes: list[Node], executor, spinner: threading.Thread | None) -> None:
    """Stop nodes' threads, the executor, destroy the nodes; rclpy's context last."""
    for node in reversed(nodes):
        begin = getattr(node, 'begin_shutdown', None)
        if begin is not None:
            begin()  # e.g. stop a running consolidation so its callback returns
    if spinner is not None:
        spinner.join()  # takes no new callback from here on
    if executor is not None:
        shutdown_executor(executor)  # waits for callbacks still running
    for node in reversed(nodes):
        close = getattr(node, 'close', None)
        if close is not None:
            close()  # the node's own threads that use rclpy
    for node in reversed(nodes):
        node.destroy_node()
    rclpy.try_shutdown()


def spin_nodes(make_nodes: Callable[[], list[Node]], args: list[str] | None = None,
               num_threads: int = 4, grace_s: float = SHUTDOWN_GRACE_S) -> int:
    """Init rclpy, build nodes, spin them until SIGINT/SIGTERM and shut down cleanly.

    ``num_threads`` > 1 spins on a MultiThreadedExecutor (callback groups run in parallel);
    1 on a SingleThreadedExecutor, far cheaper in rclpy for a node whose callbacks are short.
    The executor spins in a thread of its own while the main thread waits for a stop request,
    so signals are handled at once whatever the executor is doing. Nodes may define
    ``begin_shutdown()`` (called first) and ``close()`` (after the executor has stopped).

    Returns the exit status: 0 after a signal, 2 for an invalid parameter, 3 for a learner
    state that cannot be used, 1 if the executor failed.
    """
    # The learner's inference thread runs ~100 short torch ops per frame and takes the GIL back
    # after each; with the default 5 ms switch interval the executor threads kept it waiting
    # (12 -> 26 predictions/s at 30 fps in benchmark_ros with 0.5 ms).
    sys.setswitchinterval(0.0005)
    # Fixed heap thresholds: freed training maps leave the resident set, and an untaught learner
    # does not fault its heap in again at every frame (core/heap.py).
    fix_heap_thresholds()
    stop = process_stop_request(grace_s)  # already in place in the executables
    stop.started()  # a stop signal from here on is a request (before: exit at once)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)  # ours, above
    nodes: list[Node] = []
    executor = spinner = None
    failure: list = []
    status = 0
    try:
        nodes = make_nodes()
        if not stop.requested:
            executor = (MultiThreadedExecutor(num_threads=num_threads) if num_threads > 1
                        else SingleThreadedExecutor())
            for node in nodes:
                executor.add_node(node)
            spinner = threading.Thread(target=_spin, args=(executor, stop, failure),
                                       name='executor', daemon=True)
            spinner.start()
            while not stop.wait(1.0):
                pass
    except ParameterError as exc:
        say(f'invalid parameter: {exc}')
        status = 2
    except StateStoreError as exc:  # e.g. a state directory made by another model
        say(f'cannot use the learner state: {exc}')
        status = 3
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # a signal before the handlers were in place, or rclpy shut down elsewhere
    except Exception:  # noqa: BLE001 - a node that cannot start: say why, exit 1
        say(f'could not start:\n{traceback.format_exc()}')
        status = 1
    finally:
        stop.hard_exit_status = status
        stop.request('shutting down')  # from here on the watchdog bounds the shutdown
        try:
            _close(nodes, executor, spinner)
        finally:
            stop.finished()
    if failure:
        say(f'the executor failed:\n{failure[0][1]}')
        status = 1
    return status
