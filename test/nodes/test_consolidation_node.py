"""The consolidation node runs the deep update on its timer, on the node clock (sim time)."""

from builtin_interfaces.msg import Time
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from cl_core_ros.data.photos import render_frames
from cl_core_ros.msg import LearnerStatus
from cl_core_ros.nodes.learner_node import LATCHED
from cl_core_ros.srv import LabelObject, StartLearning

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_consolidates_when_lessons_wait_following_sim_time(start_node, probe, tmp_path):
    start_node('learner_node', ['-p', f'state_dir:={tmp_path / "state"}', '-p',
                                'gather.rate:=50.0', '-p', 'replay.deep_size:=50',
                                '-p', 'training.deep_epochs:=1'])
    consolidation = start_node('consolidation_node', [
        '-p', 'use_sim_time:=true', '-p', 'period:=2.0', '-p', 'min_idle_seconds:=1.0'])
    status = probe.collect(LearnerStatus, '/learner/status', LATCHED)
    frames = probe.node.create_publisher(Image, '/frames', qos_profile_sensor_data)
    clock = probe.node.create_publisher(Clock, '/clock', 10)
    images = render_frames('coffee', 1, 10)

    resp = probe.call(LabelObject, '/learner/label_object',
                      LabelObject.Request(label='mug', num_frames=8), 120)
    assert resp.success, resp.message
    sent = [0]

    def feed():
        img = np.ascontiguousarray(images[sent[0] % len(images)])
        sent[0] += 1
        frames.publish(Image(height=128, width=128, encoding='rgb8', step=384,
                             data=img.tobytes()))
        return status and status[-1].frames_gathered >= 8
    probe.spin_until(feed, 60, 'frames gathered')
    assert probe.call(StartLearning, '/learner/start_learning', StartLearning.Request()).success
    probe.spin_until(lambda: status[-1].pending_experiences == 1, 30, 'a pending lesson')

    # Sim time stands still (no /clock yet): the timer never fires, nothing is consolidated.
    probe.spin_for(4.0)
    assert status[-1].pending_experiences == 1
    assert 'consolidating' not in consolidation.output()

    # Sim time runs (5x faster than wall time): the node consolidates.
    sim_ns = [10**9]

    def tick():
        sim_ns[0] += 50_000_000
        clock.publish(Clock(clock=Time(sec=sim_ns[0] // 10**9, nanosec=sim_ns[0] % 10**9)))
        probe.spin_for(0.01)
        return status[-1].pending_experiences == 0
    probe.spin_until(tick, 180, 'the consolidation node to consolidate')
    probe.spin_until(lambda: 'consolidated 1 lessons' in consolidation.output(), 30, 'its log')
    assert status[-1].last_consolidation_seconds > 0
