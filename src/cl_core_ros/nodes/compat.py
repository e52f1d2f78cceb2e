"""Where rclpy 7 (ROS 2 Jazzy) and rclpy 9 (Kilted) differ, in one place.

Everything else in the package uses the API both have (checked by running the whole test suite
on both: ``scripts/test.sh`` and ``scripts/test.sh --distro jazzy``).
"""

from concurrent.futures import ThreadPoolExecutor


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
