"""The newest camera frame, taken by the thread that processes it.

The learner's frame subscription lives on an internal node that only the inference thread spins
(a SingleThreadedExecutor), so frames never pass through the learner's multi-threaded executor.
That executor's Python wake-ups for every frame took the GIL away from inference between torch
operations and the hand-over to another thread added a queueing delay. Here the inference thread
wakes on a frame, converts it and runs the model in one go, while the node's executor sleeps until
a service call or a timer.

The subscription keeps the last sample only (sensor-data QoS, depth 1): whatever arrives while
the model runs replaces the previous frame, so no backlog can build up.
"""

from collections.abc import Callable

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import Image

NEWEST_FRAME = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability,
                          durability=qos_profile_sensor_data.durability,
                          history=qos_profile_sensor_data.history)


class FrameInbox:
    """Subscription to ``topic`` of ``owner`` served by :meth:`wait` in the calling thread."""

    def __init__(self, owner: Node, topic: str, on_frame: Callable[[Image], None]):
        # A hidden node ('_' prefix: left out of `ros2 node list`) that takes no command-line
        # arguments, since a `__node:=` remap meant for the owner would rename it too; the
        # owner resolves the topic with its own remaps.
        self.node = Node(f'_{owner.get_name()}_frames', namespace=owner.get_namespace(),
                         context=owner.context, use_global_arguments=False,
                         start_parameter_services=False)
        self.topic = owner.resolve_topic_name(topic)
        self.node.create_subscription(Image, self.topic, on_frame, NEWEST_FRAME)
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)

    def wait(self, timeout: float) -> None:
        """Handle the newest frame (calls ``on_frame``) or return after ``timeout`` seconds."""
        self._executor.spin_once(timeout_sec=timeout)

    def close(self) -> None:
        """Destroy the internal node."""
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
