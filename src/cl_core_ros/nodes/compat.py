"""The few places where rclpy 7 (ROS 2 Jazzy) and rclpy 9 (Kilted) differ, in one module.

Everything else in the package uses the API both have; each function here says what differs.
"""

from concurrent.futures import ThreadPoolExecutor

import rclpy
from rclpy.signals import SignalHandlerOptions


def init_without_signal_handlers(args: list[str] | None = None, context=None) -> None:
    """``rclpy.init`` without rclpy's own SIGINT/SIGTERM handlers (the caller has its own)."""
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)


def shutdown_executor(executor) -> None:
    """Shut ``executor`` down and wait until no callback of it runs any more.

    rclpy 9's ``MultiThreadedExecutor.shutdown`` joins its worker threads; rclpy 7's has no
    such override and leaves a callback that still runs going on while its node is destroyed.
    Neither version's ``Executor.shutdown`` waits for running callbacks (despite saying so), so
    the worker pool is joined here on both.
    """
    executor.shutdown(timeout_sec=0)
    pool = getattr(executor, '_executor', None)  # MultiThreadedExecutor's worker threads
    if isinstance(pool, ThreadPoolExecutor):
        pool.shutdown(wait=True)


def set_timer_period(timer, seconds: float) -> None:
    """Give a running timer a new period, counted from now."""
    timer.timer_period_ns = int(seconds * 1e9)
    timer.reset()
