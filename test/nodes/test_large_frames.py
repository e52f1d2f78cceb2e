"""Large frames on a default DDS set-up: received with qos.reliability, reported when lost.

Both the camera node and the stand-in driver (``bench_large_frames --stream``, its own process)
run with Fast DDS at its defaults bound to loopback (config/fastdds_loopback_defaults.xml), as a
robot's camera driver does: no enlarged shared-memory segment.
"""

import subprocess
import sys

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from cl_core_ros.loopback import DEFAULTS_PROFILE_NAME, loopback_env

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture
def defaults_env(ros_env, tmp_path):
    """The test's loopback environment (its domain id) with the Fast DDS defaults profile."""
    return loopback_env(tmp_path / 'ros_log_defaults', int(ros_env['ROS_DOMAIN_ID']),
                        profile=DEFAULTS_PROFILE_NAME)


def _camera(diags: list) -> dict[str, str]:
    for msg in reversed(diags):
        for status in msg.status:
            if status.name.endswith(': camera'):
                return {kv.key: kv.value for kv in status.values}
    return {}


def _stream(env, tmp_path, frames: int, size: str = '1920x1080') -> subprocess.Popen:
    log = open(tmp_path / f'stream-{size}.log', 'wb')  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, '-m', 'cl_core_ros.tools.bench_large_frames',
                             '--stream', size, '--frames', str(frames), '--fps', '15'],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def _start(start_node, defaults_env, reliability: str):
    return start_node('camera_node', ['-p', f'qos.reliability:={reliability}',
                                      '-p', 'diagnostics_period:=0.3', '-p', 'input_timeout:=2.0',
                                      '-p', 'max_rate:=30.0'], env=defaults_env)


def test_a_reliable_subscription_gets_full_hd_frames_on_default_fast_dds(
        start_node, defaults_env, probe, tmp_path):
    camera = _start(start_node, defaults_env, 'reliable')
    diags = probe.collect(DiagnosticArray, '/diagnostics', 50)
    probe.spin_until(lambda: _camera(diags), 60, 'camera diagnostics')
    driver = _stream(defaults_env, tmp_path, 900)  # up to a minute of 15 Hz
    try:
        probe.spin_until(lambda: int(_camera(diags)['received']) >= 30, 60,
                         f'30 1920x1080 frames (camera: {_camera(diags)})')
    finally:
        driver.kill()
    values = _camera(diags)
    assert values['qos.reliability'] == 'reliable' and values['lost'] == '0', values
    assert camera.alive(), camera.tail()


def test_lost_full_hd_frames_are_reported_with_what_to_do(start_node, defaults_env, probe,
                                                          tmp_path):
    camera = _start(start_node, defaults_env, 'best_effort')
    diags = probe.collect(DiagnosticArray, '/diagnostics', 50)
    probe.spin_until(lambda: _camera(diags), 60, 'camera diagnostics')
    driver = _stream(defaults_env, tmp_path, 75)
    try:
        probe.spin_until(lambda: _camera(diags).get('input') == 'frames lost', 60,
                         'the camera reporting lost frames')
    finally:
        driver.kill()
    values = _camera(diags)
    assert int(values['lost']) > int(values['received']), values
    assert 'qos.reliability:=reliable' in values['input.advice'], values
    assert 'frames lost' in camera.output() and 'qos.reliability:=reliable' in camera.output()


def test_a_publisher_whose_qos_never_matches_is_reported(start_node, ros_env, probe):
    camera = start_node('camera_node', ['-p', 'qos.reliability:=reliable',
                                        '-p', 'diagnostics_period:=0.3',
                                        '-p', 'input_timeout:=1.0'])
    diags = probe.collect(DiagnosticArray, '/diagnostics', 50)
    pub = probe.node.create_publisher(Image, '/image_raw', QoSProfile(
        depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    frame = Image(height=8, width=8, encoding='rgb8', step=24, data=np.zeros(192, np.uint8))
    probe.spin_until(lambda: pub.publish(frame) or _camera(diags).get('input')
                     == 'publishers seen, nothing received', 60, 'the camera reporting no input')
    values = _camera(diags)
    assert 'qos.reliability:=best_effort' in values['input.advice'], values
    assert int(values['incompatible_qos']) >= 1 and values['received'] == '0', values
    assert 'incompatible' in camera.output()
    probe.node.destroy_publisher(pub)
    pub = probe.node.create_publisher(Image, '/image_raw', 10)  # reliable: it matches
    probe.spin_until(lambda: pub.publish(frame) or _camera(diags).get('input') == 'ok'
                     and int(_camera(diags)['received']) > 0, 60, 'frames from a reliable one')


def test_a_lost_count_no_stream_could_reach_counts_as_one_loss():
    # Fast DDS 2.14 (Jazzy) was seen reporting 4294967297 frames lost in one run of a test.
    from types import SimpleNamespace

    from cl_core_ros.nodes.camera_node import CameraNode
    node = SimpleNamespace(lost=0)
    for change in (1, 3, 4294967297, 2**31, 0, -5):
        CameraNode._on_message_lost(node, SimpleNamespace(total_count_change=change))
    assert node.lost == 1 + 3 + 1 + 1 + 1 + 1
