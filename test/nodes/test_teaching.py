"""Teach objects to the real nodes over DDS, recognise them, survive SIGKILL, consolidate."""

import threading
import time

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from cl_core_ros.data.photos import render_frames
from cl_core_ros.msg import LearnerStatus, Prediction
from cl_core_ros.nodes.learner_node import LATCHED
from cl_core_ros.srv import Consolidate, LabelObject, ListClasses, StartLearning

pytestmark = [pytest.mark.ros, pytest.mark.slow]

OBJECTS = {'chelsea': 'cat', 'coffee': 'mug', 'rocket': 'rocket'}
FAST = ['-p', 'gather.rate:=30.0', '-p', 'inference.smoothing_window:=3']


class Camera:
    """Publishes 320x240 frames of one object at a time, like a camera driver."""

    def __init__(self, probe, fps: float = 20.0):
        self.pub = probe.node.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
        self.frames = None
        self.i = 0
        self.sent = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(1.0 / fps,), daemon=True)
        self._thread.start()

    def show(self, name: str, session: int, first: int = 0, n: int = 40):
        frames = render_frames(name, session, n, size=240, first_frame=first)
        canvas = np.full((n, 240, 320, 3), 80, np.uint8)
        canvas[:, :, 40:280] = frames
        with self._lock:
            self.frames, self.i = canvas, 0

    def _run(self, period: float):
        while not self._stop.wait(period):
            with self._lock:
                if self.frames is None:
                    continue
                img = self.frames[self.i % len(self.frames)]
                self.i += 1
            self.pub.publish(Image(height=240, width=320, encoding='rgb8', step=960,
                                   data=img.tobytes()))
            self.sent += 1

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)


def _start_learner(start_node, state_dir, extra=()):
    return start_node('learner_node', ['-p', f'state_dir:={state_dir}', *FAST, *extra])


def _teach(probe, status, label: str, n: int = 20):
    resp = probe.call(LabelObject, '/learner/label_object', LabelObject.Request(
        label=label, num_frames=n))
    assert resp.success, resp.message
    probe.spin_until(lambda: status and status[-1].frames_gathered >= n, 60,
                     f'{n} frames of {label}')
    resp = probe.call(StartLearning, '/learner/start_learning', StartLearning.Request())
    assert resp.success, resp.message
    assert resp.frames_used == n and resp.state_version > 0
    return resp


def _recognised(probe, camera, preds, name: str, session: int) -> str:
    camera.show(name, session, first=100)
    start = time.monotonic()
    probe.spin_until(lambda: sum(t > start + 0.5 for t, _ in preds) >= 8, 30,
                     f'predictions for {name}')
    recent = [m for t, m in preds if t > start + 0.5][-5:]
    tops = [m.labels[0] if len(m.labels) else '' for m in recent]
    return max(set(tops), key=tops.count)


def test_teach_recognise_survive_sigkill_and_consolidate(start_node, probe, tmp_path):
    state_dir = tmp_path / 'state'
    camera_proc = start_node('camera_node', ['-p', 'max_rate:=30.0'])
    learner = _start_learner(start_node, state_dir)
    start_node('consolidation_node', ['-p', 'period:=3600.0'])
    status = probe.collect(LearnerStatus, '/learner/status', LATCHED)
    preds: list = []
    probe.node.create_subscription(
        Prediction, '/predictions', lambda m: preds.append((time.monotonic(), m)), 50)
    camera = Camera(probe)
    try:
        camera.show('chelsea', 1)
        probe.spin_until(lambda: preds, 120, 'first prediction')
        assert preds[-1][1].unknown and len(preds[-1][1].labels) == 0  # knows nothing yet
        for name, label in OBJECTS.items():
            camera.show(name, 1)
            _teach(probe, status, label)
        for name, label in OBJECTS.items():
            assert _recognised(probe, camera, preds, name, 2) == label

        learner.kill()  # a crash: nothing is flushed, no signal handler runs
        learner = _start_learner(start_node, state_dir)
        resp = probe.call(ListClasses, '/learner/list_classes', ListClasses.Request(), 120,
                          resend_after=3.0)
        assert sorted(resp.labels) == sorted(OBJECTS.values())
        preds.clear()
        for name, label in OBJECTS.items():
            assert _recognised(probe, camera, preds, name, 3) == label

        # Predictions keep flowing while the deep consolidation runs.
        camera.show('coffee', 4)
        probe.spin_until(lambda: len(preds) > 5, 30, 'predictions before consolidating')
        client = probe.node.create_client(Consolidate, '/learner/consolidate')
        future = client.call_async(Consolidate.Request(force=False))
        probe.spin_until(lambda: status[-1].state == LearnerStatus.STATE_CONSOLIDATING, 30,
                         'consolidating state')
        started = time.monotonic()
        probe.spin_until(future.done, 300, 'consolidation to finish')
        during = [m for t, m in preds if started <= t]
        resp = future.result()
        assert resp.success, resp.message
        assert resp.experiences == 3
        assert len(during) >= 3, f'only {len(during)} predictions during consolidation'
        assert status[-1].pending_experiences == 0
        assert _recognised(probe, camera, preds, 'rocket', 5) == 'rocket'
    finally:
        camera.close()
    assert learner.alive(), learner.output()[-3000:]
    assert camera_proc.alive()
