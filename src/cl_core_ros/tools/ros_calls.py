"""Bounded waits and blocking service calls for tools whose node spins on another thread."""

from collections.abc import Callable
import time


def wait_until(condition: Callable[[], bool], timeout: float, what: str = 'condition',
               interval: float = 0.05) -> None:
    """Poll ``condition`` until it is true; raise TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f'timed out after {timeout:.1f} s waiting for {what}')
        time.sleep(interval)


def call_service(node, srv_type, name: str, request, timeout: float = 120.0,
                 discovery_timeout: float = 90.0):
    """Call service ``name`` and return the response; the node must be spun elsewhere."""
    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=discovery_timeout):
            raise TimeoutError(f'service {name} did not appear in {discovery_timeout} s')
        future = client.call_async(request)
        wait_until(future.done, timeout, f'the answer of {name}', interval=0.01)
        return future.result()
    finally:
        node.destroy_client(client)
