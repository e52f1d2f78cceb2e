"""Bounded waits and blocking service calls for tools whose node spins on another thread.

Every call has a bounded wait and a recovery: it ends with the answer, with
:class:`TimeoutError` after ``timeout``, or with :class:`ServerGoneError` as soon as the server
is known to be gone (its process exited, or the server that took the request left the ROS graph
for ``gone_after`` seconds, even when a restarted server took its place meanwhile) instead of
waiting out the timeout for an answer that cannot come. A pending request is always
removed from the client, so a late answer is never taken for the next call's. Idempotent calls
may ask to be sent again once the server is back (``resend=True``).
"""

from collections.abc import Callable
import time


class ServerGoneError(ConnectionError):
    """The service's server went away while a call waited for its answer."""


def wait_until(condition: Callable[[], bool], timeout: float, what: str = 'condition',
               interval: float = 0.05) -> None:
    """Poll ``condition`` until it is true; raise TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f'timed out after {timeout:.1f} s waiting for {what}')
        time.sleep(interval)


def call_service(node, srv_type, name: str, request, timeout: float = 120.0,
                 discovery_timeout: float = 90.0, *, alive: Callable[[], bool] | None = None,
                 gone_after: float = 5.0, resend: bool = False):
    """Call service ``name`` and return the response; the node must be spun elsewhere.

    Args:
        node: an rclpy node spun on another thread.
        srv_type: the service type, e.g. ``cl_core_ros.srv.Consolidate``.
        name: the service name.
        request: the request message.
        timeout: seconds to wait for the answer (after the service was found).
        discovery_timeout: seconds to wait for the service to appear.
        alive: optional check that the server's process still runs (e.g.
            ``NodeProcess.alive``); False ends the wait at once.
        gone_after: seconds the service may be missing from the graph during a call before
            its server counts as gone.
        resend: send the request again when the server is back (idempotent calls only),
            within the same ``timeout``.

    Raises:
        TimeoutError: the service did not appear, or no answer came in ``timeout``.
        ServerGoneError: the server went away during the call (and ``resend`` is off, or it
            did not come back in time).

    """
    client = node.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=discovery_timeout):
            raise TimeoutError(f'service {name} did not appear in {discovery_timeout} s')
        deadline = time.monotonic() + timeout
        while True:
            servers = server_endpoints(node, client.service_name)
            future = client.call_async(request)
            gone = _wait_answer(client, future, name, deadline, alive, gone_after, timeout,
                                lambda: server_endpoints(node, client.service_name), servers)
            if gone is None:
                return future.result()
            if not resend or (alive is not None and not alive()):
                raise ServerGoneError(f'the server of {name} went away during the call '
                                      f'({gone}); the request was dropped')
            left = deadline - time.monotonic()
            if left <= 0 or not client.wait_for_service(timeout_sec=left):
                raise ServerGoneError(f'the server of {name} went away during the call '
                                      f'({gone}) and did not come back in time')
    finally:
        node.destroy_client(client)


def server_endpoints(node, service_name: str) -> frozenset[bytes]:
    """Return the endpoint GIDs of the servers of a fully qualified service ``service_name``.

    A server is known by the reader of its request topic, ``rq<name>Request`` in the DDS
    naming of ROS 2 (rmw_fastrtps, rmw_cyclonedds, rmw_connextdds). Empty when the graph does
    not show it (another naming, or not discovered yet).
    """
    infos = node.get_subscriptions_info_by_topic(f'rq{service_name}Request', no_mangle=True)
    return frozenset(bytes(info.endpoint_gid) for info in infos)


def _wait_answer(client, future, name: str, deadline: float,
                 alive: Callable[[], bool] | None, gone_after: float, timeout: float,
                 endpoints: Callable[[], frozenset[bytes]],
                 sent_to: frozenset[bytes]) -> str | None:
    """Wait for ``future``; return None once answered, or why the server is gone.

    ``sent_to`` are the endpoints of the servers the request went to: once none of them is in
    the graph (``endpoints()``), the request cannot be answered, even if another server (a
    restarted one) offers the service meanwhile. Without them, the service's presence counts.
    """
    missing_since = None
    while not future.done():
        now = time.monotonic()
        reason = None
        present = (bool(sent_to & endpoints()) if sent_to else client.service_is_ready())
        if alive is not None and not alive():
            reason = 'its process exited'
        elif present:
            missing_since = None
        elif missing_since is None:
            missing_since = now
        elif now - missing_since >= gone_after:
            reason = (f'the server that took the request left the ROS graph for '
                      f'{gone_after:.0f} s')
        if reason is not None or now > deadline:
            client.remove_pending_request(future)
            if future.done():  # answered meanwhile after all
                return None
            if reason is None:
                raise TimeoutError(f'timed out after {timeout:.1f} s waiting for the answer '
                                   f'of {name}')
            return reason
        time.sleep(0.02)
    return None
