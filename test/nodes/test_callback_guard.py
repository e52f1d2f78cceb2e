"""The callback guard: an exception nobody expected is counted, logged (throttled), survived."""

import threading

import cv2
import pytest
import rclpy
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from cl_core_ros.nodes.callback_guard import CallbackGuard, error_reason
from cl_core_ros.nodes.runtime import spin_guarded
from cl_core_ros.tools.ros_calls import wait_until

pytestmark = pytest.mark.ros


class _Lines:
    """Collects what the guard logs (the node logger's interface)."""

    def __init__(self):
        self.errors: list[str] = []

    def error(self, text: str) -> None:
        self.errors.append(text)


def test_reasons_name_the_callback_and_the_exception_type():
    assert error_reason('image_raw', cv2.error('x')) == 'image_raw.cv2.error'
    assert error_reason('tick', AttributeError('x')) == 'tick.AttributeError'


def test_log_lines_are_throttled_per_reason_and_counted():
    lines = _Lines()
    guard = CallbackGuard(lines, log_period=3600.0)
    boom = guard.subscription('image_raw', lambda msg: 1 / 0)
    for _ in range(50):
        boom(None)
    guard.timer('tick', lambda: [][1])()
    assert guard.errors == {'image_raw.ZeroDivisionError': 50, 'tick.IndexError': 1}
    assert len(lines.errors) == 2  # the first of each reason, with its traceback
    assert 'Traceback' in lines.errors[0] and 'the node goes on' in lines.errors[0]
    values = guard.diagnostic_values()
    assert values['callback_errors'] == 51
    assert values['callback_errors.image_raw.ZeroDivisionError'] == 50
    guard = CallbackGuard(lines, log_period=0.0)
    boom = guard.subscription('image_raw', lambda msg: 1 / 0)
    boom(None)
    boom(None)
    assert '2 in all' in lines.errors[-1]


@pytest.fixture
def context(ros_env, monkeypatch):
    for key, value in ros_env.items():
        monkeypatch.setenv(key, value)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    ctx.try_shutdown()


def test_guarded_callbacks_of_a_real_node_fail_and_the_node_goes_on(context):
    node = Node('guarded', context=context)
    guard = CallbackGuard(node.get_logger())
    got: list[str] = []

    def on_msg(msg):
        if msg.data == 'bad':
            raise cv2.error('a decoder failed in a way nobody expected')
        got.append(msg.data)

    def service(req, resp):
        raise AttributeError("'numpy.ndarray' object has no attribute 'newbyteorder'")

    node.create_subscription(String, 'topic', guard.subscription('topic', on_msg), 10)
    node.create_service(Trigger, 'trigger', guard.service('trigger', service))
    ticks = []
    node.create_timer(0.01, guard.timer('tick', lambda: ticks.append(1) or 1 / 0))
    pub = node.create_publisher(String, 'topic', 10)
    client = node.create_client(Trigger, 'trigger')
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        def spin_until(cond, what):
            for _ in range(2000):
                if cond():
                    return
                executor.spin_once(timeout_sec=0.01)
            raise TimeoutError(what)
        spin_until(lambda: pub.get_subscription_count() and client.service_is_ready(), 'graph')
        pub.publish(String(data='bad'))
        spin_until(lambda: guard.errors['topic.cv2.error'] == 1, 'the bad message')
        future = client.call_async(Trigger.Request())
        spin_until(future.done, 'the answer')
        assert future.result().success is False
        assert 'AttributeError' in future.result().message
        pub.publish(String(data='good'))
        spin_until(lambda: got == ['good'], 'the next good message')
        spin_until(lambda: len(ticks) >= 3, 'the timer to keep firing')
        assert guard.errors['tick.ZeroDivisionError'] >= 3
        assert guard.errors['trigger.AttributeError'] == 1
    finally:
        executor.shutdown()
        node.destroy_node()


def test_spin_guarded_outlives_an_unguarded_callback(context):
    node = Node('unguarded', context=context)
    calls = []

    def tick():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError('escaped a callback')
    node.create_timer(0.01, tick)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    ended = []

    def spin():
        try:
            spin_guarded(executor)
            ended.append('returned')
        except (ExternalShutdownException, ShutdownException) as exc:
            ended.append(exc)  # how rclpy 7 (Jazzy) ends spin() once the context shuts down

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        wait_until(lambda: len(calls) >= 5, 30, 'timer calls after the exception')
        assert spinner.is_alive()
    finally:
        context.try_shutdown()
        spinner.join(timeout=10)
        executor.shutdown()
        node.destroy_node()
    assert not spinner.is_alive()
    assert len(ended) == 1, ended  # ended by the shutdown, not by the callback's exception
