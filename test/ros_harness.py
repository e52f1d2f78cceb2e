"""Test harness for real nodes over loopback-only DDS.

Every test that starts nodes gets its own ROS domain id, log directory and the Fast DDS profile
bound to 127.0.0.1 (:func:`cl_core_ros.loopback.loopback_env`). Nodes run in real subprocesses
(:class:`NodeProcess`), always stopped on exit, also when the test fails; the test side talks to
them through a :class:`RosProbe` in an isolated ``rclpy.Context``. Waits are bounded conditions,
never fixed sleeps.
"""

from collections.abc import Callable
import os
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from cl_core_ros.tools.node_process import NodeProcess
from cl_core_ros.tools.ros_calls import wait_until

__all__ = ['NodeProcess', 'RosProbe', 'wait_for']

wait_for = wait_until


class RosProbe:
    """The test's own node, in an isolated context, with bounded waits."""

    def __init__(self, env: dict[str, str], name: str = 'probe'):
        for key in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_STATIC_PEERS',
                    'FASTDDS_DEFAULT_PROFILES_FILE',
                    'RMW_IMPLEMENTATION', 'ROS_LOG_DIR', 'AMENT_PREFIX_PATH'):
            os.environ[key] = env[key]
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, condition: Callable[[], bool], timeout: float,
                   what: str = 'condition') -> None:
        """Spin the probe until ``condition`` holds or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            self.executor.spin_once(timeout_sec=0.05)
        if not condition():
            raise TimeoutError(f'timed out after {timeout:.1f} s waiting for {what}')

    def spin_for(self, seconds: float) -> None:
        """Spin for a while (to collect messages over a time window)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def topic_types(self) -> dict[str, list[str]]:
        """Return the topics seen on the graph with their types."""
        return dict(self.node.get_topic_names_and_types())

    def service_types(self) -> dict[str, list[str]]:
        """Return the services seen on the graph with their types."""
        return dict(self.node.get_service_names_and_types())

    def wait_for_topic(self, name: str, type_name: str, timeout: float = 20.0) -> None:
        """Wait until ``name`` with type ``type_name`` (e.g. 'std_msgs/msg/String') appears."""
        self.spin_until(lambda: type_name in self.topic_types().get(name, []), timeout,
                        f'topic {name} [{type_name}]')

    def wait_for_service(self, name: str, type_name: str, timeout: float = 20.0) -> None:
        """Wait until service ``name`` of ``type_name`` appears."""
        self.spin_until(lambda: type_name in self.service_types().get(name, []), timeout,
                        f'service {name} [{type_name}]')

    def collect(self, msg_type, topic: str, qos) -> list:
        """Subscribe to ``topic`` and return the list that receives its messages."""
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def call(self, srv_type, name: str, request, timeout: float = 30.0,
             resend_after: float | None = None):
        """Call a service and return its response (TimeoutError if none in ``timeout``).

        ``resend_after``: for idempotent calls right after a server restarted, send the request
        again when no answer came in that many seconds (a request sent while discovery still
        matched the dead server is lost).
        """
        client = self.node.create_client(srv_type, name)
        try:
            self.spin_until(client.service_is_ready, timeout, f'service {name}')
            deadline = time.monotonic() + timeout
            while True:
                future = client.call_async(request)
                wait = min(resend_after or timeout, deadline - time.monotonic())
                try:
                    self.spin_until(future.done, max(wait, 0.0), f'response of {name}')
                    return future.result()
                except TimeoutError:
                    client.remove_pending_request(future)
                    if time.monotonic() >= deadline:
                        raise
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        """Destroy the node and shut the context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
