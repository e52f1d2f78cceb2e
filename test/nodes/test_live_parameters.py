"""Parameters tuned while the nodes run, over DDS, as ``ros2 param set`` and rqt_reconfigure do.

For every runtime parameter of the learner: a valid value is accepted and takes effect on the
next frames (or the next lesson), an invalid one is refused with the reason and changes
nothing; parameters that shape the model are refused with why. The camera and consolidation
nodes' runtime parameters are checked the same way.
"""

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from cl_core_ros.data.photos import render_frames
from cl_core_ros.msg import LearnerStatus, Prediction
from cl_core_ros.nodes import camera_node, consolidation_node, learner_node
from cl_core_ros.nodes.learner_node import LATCHED
from cl_core_ros.srv import LabelObject, StartLearning

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SIZE = 128


class Frames:
    """Publishes frames of one object at a time; ``header.frame_id`` names the object."""

    def __init__(self, probe, topic: str = '/frames', size: int = SIZE, fps: float = 20.0):
        self.pub = probe.node.create_publisher(Image, topic, qos_profile_sensor_data)
        self.size = size
        self._images: dict[str, list] = {}
        self.showing = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(1.0 / fps,), daemon=True)
        self._thread.start()

    def show(self, name: str | None, session: int = 1) -> None:
        if name is not None and (name, session) not in self._images:
            frames = render_frames(name, session, 12, size=self.size)
            self._images[name, session] = [np.ascontiguousarray(f) for f in frames]
        with self._lock:
            self.showing = None if name is None else (name, session)

    def still(self, name: str, session: int = 1) -> None:
        """Show one frame of ``name`` over and over (a camera looking at a still scene)."""
        self.show(name, session)
        with self._lock:
            self._images[name, session] = [self._images[name, session][0]] * 12

    def _run(self, period: float) -> None:
        i = 0
        while not self._stop.wait(period):
            with self._lock:
                showing = self.showing
            if showing is None:
                continue
            img = self._images[showing][i % 12]
            i += 1
            msg = Image(height=self.size, width=self.size, encoding='rgb8', step=3 * self.size,
                        data=img.tobytes())
            msg.header.frame_id = showing[0]
            self.pub.publish(msg)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Params:
    """set/get/describe a node's parameters through its parameter services."""

    def __init__(self, probe, node: str):
        self.probe, self.node = probe, node

    def set(self, name: str, value):
        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.probe.call(SetParameters, f'/{self.node}/set_parameters', req).results[0]

    def get(self, name: str):
        resp = self.probe.call(GetParameters, f'/{self.node}/get_parameters',
                               GetParameters.Request(names=[name]))
        return Parameter.from_parameter_msg(
            _named(name, resp.values[0])).value

    def describe(self, name: str) -> str:
        resp = self.probe.call(DescribeParameters, f'/{self.node}/describe_parameters',
                               DescribeParameters.Request(names=[name]))
        return resp.descriptors[0].description

    def accepts(self, name: str, value) -> None:
        result = self.set(name, value)
        assert result.successful, f'{name} = {value!r} refused: {result.reason}'
        got = self.get(name)
        assert got == value or (isinstance(value, list) and list(got) == value), (name, got)

    def refuses(self, name: str, value, *words: str) -> str:
        before = self.get(name)
        result = self.set(name, value)
        assert not result.successful, f'{name} = {value!r} was accepted'
        for word in words:
            assert word in result.reason, f'{name} = {value!r}: {result.reason!r}'
        after = self.get(name)
        assert after == before or list(after) == list(before), (name, before, after)
        return result.reason


def _named(name, value_msg):
    from rcl_interfaces.msg import Parameter as ParameterMsg
    return ParameterMsg(name=name, value=value_msg)


def _after(messages, t0):
    return [m for t, m in messages if t > t0]


def _predictions(probe):
    preds: list = []
    probe.node.create_subscription(
        Prediction, '/predictions', lambda m: preds.append((time.monotonic(), m)), 100)
    return preds


def _next(probe, preds, n: int, what: str, timeout: float = 30.0) -> list:
    """Return the next ``n`` predictions from now on."""
    t0 = time.monotonic()
    probe.spin_until(lambda: len(_after(preds, t0)) >= n, timeout, what)
    return _after(preds, t0)[:n]


def _teach(probe, status, frames, name: str, label: str, n: int = 8) -> None:
    frames.show(name)
    resp = probe.call(LabelObject, '/learner/label_object',
                      LabelObject.Request(label=label, num_frames=n), 60)
    assert resp.success, resp.message
    probe.spin_until(lambda: status and status[-1].frames_gathered >= n, 60, f'{label} frames')
    resp = probe.call(StartLearning, '/learner/start_learning', StartLearning.Request())
    assert resp.success, resp.message


def test_learner_parameters_change_live_and_take_effect(start_node, probe, tmp_path):
    state = tmp_path / 'state'
    learner = start_node('learner_node', ['-p', f'state_dir:={state}', '-p',
                                          f'input_size:={SIZE}', '-p', 'gather.rate:=30.0'])
    status = probe.collect(LearnerStatus, '/learner/status', LATCHED)
    preds = _predictions(probe)
    frames = Frames(probe)
    p = Params(probe, 'learner')
    try:
        frames.show('coffee')
        probe.spin_until(lambda: preds, 120, 'first prediction')
        _teach(probe, status, frames, 'coffee', 'mug')
        _teach(probe, status, frames, 'chelsea', 'cat')

        # Model-shaping and other fixed parameters: refused, with why.
        p.refuses('input_size', 224, 'cannot change while the node runs', 'shapes the model')
        p.refuses('backbone', 'mobilenet_v1', 'shapes the model')
        p.refuses('centre_sigma', 0.0, 'shapes the model')
        p.refuses('replay.fast_size', 10, 'replay memories')
        p.refuses('state_dir', str(tmp_path), 'state store')
        p.refuses('max_classes', 3, 'label registry')
        p.refuses('num_threads', 2, 'thread pool')
        assert 'Fixed while the node runs (it shapes the model' in p.describe('input_size')
        assert 'Settable while the node runs' in p.describe('inference.unknown_ratio')

        # The open-set verdict on a stranger: off, by threshold, by ratio.
        frames.show('rocket')
        p.accepts('inference.unknown_ratio', 0.0)
        p.accepts('inference.unknown_threshold', 0.0)
        assert not any(m.unknown for m in _next(probe, preds, 10, 'verdict off')[3:])
        p.accepts('inference.unknown_threshold', 1.0)
        assert all(m.unknown for m in _next(probe, preds, 10, 'threshold 1')[3:])
        p.refuses('inference.unknown_threshold', 5.0, 'out of range')
        p.refuses('inference.unknown_threshold', 'high', 'type')
        p.accepts('inference.unknown_threshold', 0.0)
        p.accepts('inference.unknown_ratio', 1.0)
        assert all(m.unknown for m in _next(probe, preds, 10, 'ratio 1')[3:])
        p.refuses('inference.unknown_ratio', -0.5, 'out of range')
        p.accepts('inference.unknown_ratio', 0.0)

        # top_k: labels per message.
        p.accepts('inference.top_k', 1)
        assert {len(m.labels) for m in _next(probe, preds, 6, 'top 1')[3:]} == {1}
        p.accepts('inference.top_k', 2)
        assert {len(m.labels) for m in _next(probe, preds, 6, 'top 2')[3:]} == {2}
        p.refuses('inference.top_k', 0, 'out of range')

        # smoothing_window: how long the verdict lags behind a change of object.
        def lag(window: int) -> int:
            p.accepts('inference.smoothing_window', window)
            frames.show('coffee')
            probe.spin_until(lambda: [m for _, m in preds[-5:]
                                      if m.header.frame_id == 'coffee' and m.labels[0] == 'mug'
                                      ] and len(preds) > 5, 30, 'mug recognised')
            _next(probe, preds, 2 * window, 'history of the mug')
            t0 = time.monotonic()
            frames.show('chelsea')
            probe.spin_until(lambda: sum(m.header.frame_id == 'chelsea'
                                         for m in _after(preds, t0)) >= 12, 30, 'cat frames')
            cat = [m for m in _after(preds, t0) if m.header.frame_id == 'chelsea']
            return next(i for i, m in enumerate(cat + [None]) if m is None or m.labels[0] == 'cat')
        assert lag(1) == 0
        assert lag(30) >= 3
        p.refuses('inference.smoothing_window', 0, 'out of range')
        p.accepts('inference.smoothing_window', 1)

        # max_rate: predictions per second (frames come at 20 Hz).
        p.accepts('inference.max_rate', 2.0)
        _next(probe, preds, 2, 'slow predictions')
        t0 = time.monotonic()
        probe.spin_for(3.0)
        assert len(_after(preds, t0)) <= 8
        p.accepts('inference.max_rate', 30.0)
        _next(probe, preds, 30, 'fast predictions', timeout=10.0)
        p.refuses('inference.max_rate', 0.0, 'out of range')

        p.accepts('inference.threads', 2)  # a per-thread torch setting, applied by that thread
        p.refuses('inference.threads', -1, 'out of range')
        _next(probe, preds, 3, 'predictions with two threads')

        # Gathering defaults: frames per lesson, rate, least frames, timeout.
        p.accepts('gather.frames', 7)
        p.accepts('gather.rate', 2.0)
        p.accepts('gather.min_frames', 6)
        reason = p.refuses('gather.min_frames', 8, 'gather.frames')
        assert 'could never be learned' in reason
        p.refuses('gather.frames', 5, 'gather.min_frames')  # the same cross-check
        p.refuses('gather.rate', 100.0, 'out of range')
        p.refuses('gather.frames', 0, 'out of range')
        frames.show('rocket')
        t0 = time.monotonic()
        resp = probe.call(LabelObject, '/learner/label_object',
                          LabelObject.Request(label='rocket', num_frames=0))
        assert resp.success and 'gathering 7 frames' in resp.message, resp.message
        probe.spin_until(lambda: status[-1].frames_gathered >= 1, 30, 'a first frame')
        resp = probe.call(StartLearning, '/learner/start_learning', StartLearning.Request())
        assert not resp.success and 'at least 6 needed' in resp.message, resp.message
        probe.spin_for(1.0)
        gathered, seconds = status[-1].frames_gathered, time.monotonic() - t0
        assert gathered <= 2.0 * seconds + 2, (gathered, seconds)  # 2 frames/s, not 30
        p.accepts('gather.timeout', 1.0)
        p.refuses('gather.timeout', 0.5, 'out of range')
        frames.show(None)  # the camera stops: gathering is cancelled after 1 s
        probe.spin_until(lambda: status[-1].state == LearnerStatus.STATE_IDLE, 15,
                         'gathering cancelled')
        assert 'no frame for 1 s' in learner.output()

        # Training epochs and consolidation threads: used from the next update on.
        for name, value, bad in (('training.fast_epochs', 2, 0), ('training.deep_epochs', 1, 0),
                                 ('consolidation_threads', 2, -1)):
            p.accepts(name, value)
            p.refuses(name, bad, 'out of range')
        assert 'fast_epochs=2' in learner.output()

        # annotated_image on and off.
        frames.show('coffee')
        annotated = probe.collect(Image, '/learner/annotated_image', qos_profile_sensor_data)
        probe.spin_until(lambda: annotated, 30, 'annotated images')
        p.accepts('annotated_image', False)
        probe.spin_for(0.5)
        n = len(annotated)
        _next(probe, preds, 10, 'predictions without annotation')
        assert len(annotated) == n
        p.refuses('annotated_image', 'yes', 'type')
        p.accepts('annotated_image', True)

        # diagnostics_period: /diagnostics messages of the learner per second.
        diags = []
        probe.node.create_subscription(DiagnosticArray, '/diagnostics', lambda m: diags.append(
            time.monotonic()) if 'learner' in m.status[0].name else None, 50)
        p.accepts('diagnostics_period', 0.2)
        probe.spin_until(lambda: len(diags) >= 2, 10, 'diagnostics')
        t0 = time.monotonic()
        probe.spin_for(2.0)
        assert len([t for t in diags if t > t0]) >= 6
        p.refuses('diagnostics_period', 0.0, 'out of range')

        # max_pixels: larger frames are dropped.
        p.accepts('max_pixels', 100)
        probe.spin_for(0.5)
        t0 = time.monotonic()
        probe.spin_for(1.5)
        assert not _after(preds, t0)
        p.accepts('max_pixels', 40_000_000)
        _next(probe, preds, 3, 'predictions again')
        p.refuses('max_pixels', 0, 'out of range')

        # state_keep: versions kept after the next commit.
        p.accepts('state_keep', 1)
        assert probe.call(Trigger, '/learner/save_state', Trigger.Request()).success
        assert len([d for d in state.iterdir() if d.name.startswith('v')]) == 1
        p.refuses('state_keep', 0, 'out of range')
    finally:
        frames.close()
    assert learner.alive(), learner.output()[-3000:]
    assert 'Traceback' not in learner.output()


def test_camera_and_consolidation_parameters_change_live(start_node, probe):
    start_node('camera_node', ['-p', 'max_rate:=20.0'])
    start_node('consolidation_node')
    frames_out = []
    probe.node.create_subscription(Image, '/frames', lambda m: frames_out.append(
        (time.monotonic(), m)), qos_profile_sensor_data)
    stream = Frames(probe, topic='/image_raw', size=160, fps=30.0)
    cam, cons = Params(probe, 'camera'), Params(probe, 'consolidation')
    try:
        stream.show('coffee')
        probe.spin_until(lambda: len(frames_out) > 3, 60, 'camera frames')
        cam.refuses('output_size', 128, "learner's input_size")

        cam.accepts('max_rate', 2.0)
        probe.spin_for(0.5)
        t0 = time.monotonic()
        probe.spin_for(3.0)
        assert len(_after(frames_out, t0)) <= 8
        cam.accepts('max_rate', 30.0)
        cam.refuses('max_rate', 1000.0, 'out of range')

        def latest() -> np.ndarray:
            t0 = time.monotonic()
            probe.spin_until(lambda: len(_after(frames_out, t0)) >= 2, 10, 'new frames')
            m = _after(frames_out, t0)[-1]
            return np.frombuffer(bytes(m.data), np.uint8).reshape(m.height, m.width, 3)
        stream.still('coffee')
        whole = latest()
        cam.accepts('roi', [0, 0, 40, 40])
        corner = latest()
        assert corner.shape == whole.shape and not np.array_equal(corner, whole)
        cam.refuses('roi', [0, 0, 40, 0], 'width and a height')
        cam.refuses('roi', [0, 0, -1, 4], 'non-negative')
        cam.accepts('roi', [0, 0, 0, 0])
        cam.accepts('crop_size', 60)
        assert not np.array_equal(latest(), whole)
        cam.refuses('crop_size', -1, 'out of range')
        cam.accepts('crop_size', 0)

        cam.accepts('max_pixels', 100)
        probe.spin_for(0.5)
        t0 = time.monotonic()
        probe.spin_for(1.0)
        assert not _after(frames_out, t0)
        cam.accepts('max_pixels', 40_000_000)
        latest()
        cam.refuses('max_pixels', 0, 'out of range')
        for name, value, bad in (('max_compressed_bytes', 1000, 0),
                                 ('diagnostics_period', 0.5, 0.0)):
            cam.accepts(name, value)
            cam.refuses(name, bad, 'out of range')

        cons.refuses('learner', 'other', 'made at start-up')
        for name, value, bad in (('period', 1.0, 0.0), ('min_new_experiences', 3, 0),
                                 ('min_idle_seconds', 0.5, -1.0)):
            cons.accepts(name, value)
            cons.refuses(name, bad, 'out of range')
        cons.accepts('enabled', False)
        cons.refuses('enabled', 3, 'type')
    finally:
        stream.close()


@pytest.mark.parametrize('module', [camera_node, learner_node, consolidation_node])
def test_every_parameter_is_runtime_or_says_why_it_is_fixed(module):
    for spec in module.PARAMS:
        desc = spec.descriptor()
        assert not desc.read_only  # refused by the node's callback, which says why
        if spec.runtime:
            assert 'Settable while the node runs' in desc.description
        else:
            assert spec.fixed and spec.fixed != 'it is read once at start-up', spec.name
            assert spec.fixed in desc.description


@pytest.mark.ros
def test_a_change_that_fails_while_applied_is_answered_and_the_node_goes_on(probe):
    from rclpy.parameter import Parameter

    from cl_core_ros.nodes.params import declare, on_set, Param
    specs = [Param('rate', 1.0, 'A rate.', min=0.1, max=10.0, runtime=True)]
    values = declare(probe.node, specs)
    applied = []

    def apply(changes):
        if changes['rate'] > 5.0:
            raise RuntimeError('the timer could not be changed')
        applied.append(changes)
    on_set(probe.node, specs, values, apply=apply)
    (result,) = probe.node.set_parameters([Parameter('rate', value=7.0)])
    assert not result.successful and 'the timer could not be changed' in result.reason
    assert values['rate'] == 1.0 and not applied
    (result,) = probe.node.set_parameters([Parameter('rate', value=2.0)])
    assert result.successful and values['rate'] == 2.0 and applied == [{'rate': 2.0}]
