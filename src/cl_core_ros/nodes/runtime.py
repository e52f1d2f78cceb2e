"""What every cl_core_ros executable shares: a clean main() and the package's share directory."""

from collections.abc import Callable
import os
from pathlib import Path
import sys

import rclpy
from rclpy.executors import (
    ExternalShutdownException,
    MultiThreadedExecutor,
    ShutdownException,
    SingleThreadedExecutor,
)
from rclpy.node import Node

from cl_core_ros.core.state_store import StateStoreError
from cl_core_ros.nodes.params import ParameterError


def share_dir() -> Path:
    """Return the installed share/cl_core_ros directory (ament index first, then sys.prefix)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('cl_core_ros'))
    except (ImportError, LookupError, OSError, ValueError):
        return Path(os.environ.get('VIRTUAL_ENV') or sys.prefix) / 'share' / 'cl_core_ros'


def spin_guarded(executor) -> None:
    """Spin until shutdown; an exception that escapes a callback is logged, not fatal.

    Every node guards its own callbacks (:mod:`cl_core_ros.nodes.callback_guard`); this is the
    last line for what rclpy raises outside them, so that in a bringup one node's failure never
    ends the others.
    """
    while True:
        try:
            executor.spin()
            return
        except (KeyboardInterrupt, ExternalShutdownException, ShutdownException):
            raise
        except Exception as exc:  # noqa: BLE001 - the other nodes must go on
            rclpy.logging.get_logger('cl_core_ros').error(
                f'executor: unexpected {type(exc).__name__}: {str(exc)[:300]} (spinning on)',
                throttle_duration_sec=5.0)


def spin_nodes(make_nodes: Callable[[], list[Node]], args: list[str] | None = None,
               num_threads: int = 4) -> int:
    """Init rclpy, build nodes, spin them and shut down cleanly.

    ``num_threads`` > 1 spins on a MultiThreadedExecutor (callback groups run in parallel);
    1 on a SingleThreadedExecutor, far cheaper in rclpy for a node whose callbacks are short.
    """
    # The learner's inference thread runs ~100 short torch ops per frame and takes the GIL back
    # after each; with the default 5 ms switch interval the executor threads kept it waiting
    # (12 -> 26 predictions/s at 30 fps in benchmark_ros with 0.5 ms).
    sys.setswitchinterval(0.0005)
    rclpy.init(args=args)
    nodes: list[Node] = []
    try:
        nodes = make_nodes()
        executor = (MultiThreadedExecutor(num_threads=num_threads) if num_threads > 1
                    else SingleThreadedExecutor())
        for node in nodes:
            executor.add_node(node)
        spin_guarded(executor)
    except ParameterError as exc:
        print(f'[cl_core_ros] invalid parameter: {exc}', file=sys.stderr, flush=True)
        return 2
    except StateStoreError as exc:  # e.g. a state directory made by another model
        print(f'[cl_core_ros] cannot use the learner state: {exc}', file=sys.stderr, flush=True)
        return 3
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in reversed(nodes):
            close = getattr(node, 'close', None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
