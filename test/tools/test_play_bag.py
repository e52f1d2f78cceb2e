"""Bag player: message conversion, and playback over loopback-only DDS (player in a subprocess)."""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from rosbags.typesys import get_typestore, Stores

from cl_core_ros.data.core50 import frame_file_name, read_frame
from cl_core_ros.tools.bag_reader import image_to_rgb
from cl_core_ros.tools.core50_to_bag import convert_core50
from cl_core_ros.tools.play_bag import parse_remaps, to_rclpy_message

REPO = Path(__file__).resolve().parents[2]
TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)


def rosbags_msg(msgtype: str, **fields):
    return TYPESTORE.types[msgtype](**fields)


def stamp(ns: int):
    return rosbags_msg('builtin_interfaces/msg/Time', sec=ns // 10**9, nanosec=ns % 10**9)


def test_messages_convert_field_by_field():
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    from std_msgs.msg import String

    header = rosbags_msg('std_msgs/msg/Header', stamp=stamp(1_500_000_000_050_000_000),
                         frame_id='cam')
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8)
    image = to_rclpy_message(rosbags_msg(
        'sensor_msgs/msg/Image', header=header, height=2, width=3, encoding='rgb8',
        is_bigendian=0, step=9, data=pixels))
    assert isinstance(image, Image) and image.header.frame_id == 'cam'
    assert (image.header.stamp.sec, image.header.stamp.nanosec) == (1_500_000_000, 50_000_000)
    assert bytes(image.data) == pixels.tobytes() and (image.height, image.step) == (2, 9)
    np.testing.assert_array_equal(image_to_rgb(image, 'sensor_msgs/msg/Image'),
                                  pixels.reshape(2, 3, 3))
    compressed = to_rclpy_message(rosbags_msg(
        'sensor_msgs/msg/CompressedImage', header=header, format='png', data=pixels))
    assert isinstance(compressed, CompressedImage) and bytes(compressed.data) == pixels.tobytes()
    text = to_rclpy_message(rosbags_msg('std_msgs/msg/String', data='{"a": 1}'))
    assert isinstance(text, String) and text.data == '{"a": 1}'
    # any other type goes through the generic converter: nested messages, arrays, sequences
    info = to_rclpy_message(rosbags_msg(
        'sensor_msgs/msg/CameraInfo', header=header, height=480, width=640,
        distortion_model='plumb_bob', d=np.array([0.1, -0.2, 0, 0, 0.01]),
        k=np.arange(9, dtype=np.float64), r=np.eye(3).ravel(), p=np.arange(12.0),
        binning_x=1, binning_y=2,
        roi=rosbags_msg('sensor_msgs/msg/RegionOfInterest', x_offset=4, y_offset=5, height=6,
                        width=7, do_rectify=True)))
    assert isinstance(info, CameraInfo) and info.header.stamp.nanosec == 50_000_000
    assert list(info.d) == [0.1, -0.2, 0, 0, 0.01] and list(info.k) == list(range(9))
    assert info.roi.width == 7 and info.roi.do_rectify is True and info.binning_y == 2


def test_topic_remaps():
    assert parse_remaps(['image_raw:=/camera/image_raw', '/a:=b']) == {
        '/image_raw': '/camera/image_raw', '/a': '/b'}
    assert parse_remaps({'x': 'y'}) == {'/x': '/y'}
    assert parse_remaps(None) == {}
    with pytest.raises(ValueError):
        parse_remaps(['image_raw=/camera'])


@pytest.fixture(scope='module')
def one_bag(core50_tree, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('bags')
    report = convert_core50(core50_tree, out, sessions=[1], objects=[2], progress=False)
    return report.bags[0].path


class Collector:
    """A subscriber node in its own rclpy context, spun in a background thread."""

    def __init__(self, image_topic: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('collector', context=self.context)
        self.images, self.labels, self.clock = [], [], []
        self.lock = threading.Lock()
        self.node.create_subscription(Image, image_topic, self._on_image,
                                      qos_profile_sensor_data)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(String, '/core50/label', self._on_label, reliable)
        self.node.create_subscription(Clock, '/clock', self._on_clock, reliable)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_image(self, msg):
        with self.lock:
            self.images.append((time.monotonic(), msg))

    def _on_label(self, msg):
        with self.lock:
            self.labels.append((time.monotonic(), json.loads(msg.data)))

    def _on_clock(self, msg):
        with self.lock:
            self.clock.append(msg.clock.sec * 10**9 + msg.clock.nanosec)

    def close(self):
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self.thread.join(timeout=5.0)


@pytest.fixture
def collector_factory(ros_env):
    made = []

    def make(image_topic: str) -> Collector:
        made.append(Collector(image_topic))
        return made[-1]

    yield make
    for collector in made:
        collector.close()


@pytest.mark.ros
def test_player_process_publishes_at_recorded_rate_with_clock(one_bag, core50_tree, ros_env,
                                                              collector_factory, waiter):
    collector = collector_factory('/camera/image_raw')
    cmd = [sys.executable, '-m', 'cl_core_ros.tools.play_bag', str(one_bag), '--clock',
           '--topic-remap', '/image_raw:=/camera/image_raw', '--wait-for-subscribers', '1',
           '--wait-timeout', '20']
    env = {**ros_env, 'PYTHONPATH': str(REPO / 'src') + os.pathsep + ros_env.get('PYTHONPATH', '')}
    player = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        assert waiter(lambda: len(collector.labels) >= 20 or player.poll() is not None, 60)
        output, _ = player.communicate(timeout=30)
    finally:
        if player.poll() is None:
            os.killpg(player.pid, signal.SIGTERM)
            player.communicate(timeout=10)
    assert player.returncode == 0, output
    assert waiter(lambda: len(collector.labels) >= 20, 5), output
    with collector.lock:
        images, labels, clock = list(collector.images), list(collector.labels), list(
            collector.clock)
    # labels (reliable): all, in order, matching the folder names
    assert [lab['frame'] for _, lab in labels] == list(range(20))
    assert all((lab['session'], lab['object'], lab['category']) == (1, 2, 0) for _, lab in labels)
    # images (best effort over loopback): essentially all, in order, 50 ms apart in stamps
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in images]
    assert len(images) >= 18 and stamps == sorted(stamps)
    assert all((s - labels[0][1]['stamp_ns']) % 50_000_000 == 0 for s in stamps)
    first = images[0][1]
    frame = (stamps[0] - labels[0][1]['stamp_ns']) // 50_000_000
    np.testing.assert_array_equal(image_to_rgb(first, 'sensor_msgs/msg/Image'),
                                  read_frame(core50_tree / 's1/o2' / frame_file_name(1, 2, frame)))
    # at roughly the recorded rate: 19 frame periods = 0.95 s
    span = images[-1][0] - images[0][0]
    expected = (stamps[-1] - stamps[0]) / 1e9
    assert 0.7 * expected < span < 1.6 * expected + 0.1, (span, expected)
    # /clock: monotonic, covering the bag, also ticking between frames
    assert clock == sorted(clock)
    assert clock[0] <= labels[0][1]['stamp_ns'] and clock[-1] == labels[-1][1]['stamp_ns']
    assert len(clock) > 20


@pytest.mark.ros
def test_play_function_reuses_a_node_as_fast_as_possible(one_bag, ros_env, collector_factory,
                                                         waiter):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from cl_core_ros.tools.play_bag import BagPlayer, play

    collector = collector_factory('/image_raw')
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('player_under_test', context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        published = []
        stats = play(one_bag, node, rate=0, wait_for_subscribers=1, wait_timeout_s=20,
                     on_message=lambda topic, stamp_ns, msg: published.append(topic))
        assert stats.messages == 40 and stats.per_topic == {'/image_raw': 20,
                                                            '/core50/label': 20}
        assert published.count('/core50/label') == 20
        assert stats.wall_s < 0.95 and stats.achieved_rate > 1.0
        assert waiter(lambda: len(collector.labels) >= 20, 10)
        # a player that stops when asked
        stop = threading.Event()
        player = BagPlayer(node)
        stop.set()
        stopped = player.play(one_bag, stop_event=stop)
        assert stopped.stopped and stopped.messages == 0
        player.close()
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        context.try_shutdown()


def test_cli_arguments_stay_apart_from_ros_arguments(tmp_path):
    from cl_core_ros.tools.play_bag import main, split_ros_args

    assert split_ros_args(['bag', '--topic-remap', 'a:=b', '--ros-args', '-r', '__node:=p']) == (
        ['bag', '--topic-remap', 'a:=b'], ['--ros-args', '-r', '__node:=p'])
    assert split_ros_args(['--ros-args', '-r', 'x:=y', '--', 'bag']) == (
        ['bag'], ['--ros-args', '-r', 'x:=y'])
    # a missing bag is refused before any DDS participant starts
    assert main([str(tmp_path / 'no_such_bag')]) == 1
