"""Bad input never kills a node: malformed frames are dropped, bad calls get clear answers."""

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from cl_core_ros.msg import LearnerStatus, Prediction
from cl_core_ros.nodes.learner_node import LATCHED
from cl_core_ros.srv import (
    Consolidate,
    ForgetClass,
    LabelObject,
    ListClasses,
    RenameClass,
    Rollback,
    StartLearning,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

GOOD = np.random.default_rng(1).integers(0, 256, (120, 160, 3), np.uint8)


def _eight_k():
    return Image(height=4320, width=7680, encoding='rgb8', step=7680 * 3,
                 data=bytes(7680 * 4320 * 3))


def _bad_images():
    return [
        Image(height=120, width=160, encoding='rgb8', step=100, data=GOOD.tobytes()),
        Image(height=120, width=160, encoding='rgb8', step=480, data=GOOD.tobytes()[:5000]),
        Image(height=0, width=0, encoding='rgb8', step=0, data=b''),
        Image(height=120, width=160, encoding='weird_encoding', step=480, data=GOOD.tobytes()),
        Image(height=120, width=160, encoding='32FC1', step=640, data=bytes(76800)),
        Image(height=480, width=640, encoding='rgb8', step=1920, data=bytes(921600)),
    ]


def _bad_compressed():
    return [CompressedImage(format='jpeg', data=b'\xff\xd8 garbage'),
            CompressedImage(format='png', data=b''),
            CompressedImage(format='tiff', data=bytes(range(256)) * 10)]


def _good():
    return Image(height=120, width=160, encoding='rgb8', step=480, data=GOOD.tobytes())


def test_camera_node_drops_malformed_frames_and_keeps_working(start_node, probe):
    # 640x480 is over this node's limit.
    camera = start_node('camera_node', ['-p', 'max_rate:=200.0', '-p', 'max_pixels:=100000'])
    frames = probe.collect(Image, '/frames', qos_profile_sensor_data)
    diags = probe.collect(DiagnosticArray, '/diagnostics', 50)
    raw = probe.node.create_publisher(Image, '/image_raw', qos_profile_sensor_data)
    comp = probe.node.create_publisher(CompressedImage, '/image_raw/compressed',
                                       qos_profile_sensor_data)
    probe.spin_until(lambda: raw.get_subscription_count() and comp.get_subscription_count(),
                     30, 'camera subscriptions')
    for _ in range(3):
        for msg in _bad_images():
            raw.publish(msg)
            probe.spin_for(0.02)
        for msg in _bad_compressed():
            comp.publish(msg)
            probe.spin_for(0.02)
    assert camera.alive(), camera.output()[-3000:]

    def publish_good():
        raw.publish(_good())
        return bool(frames)
    probe.spin_until(publish_good, 30, 'a good frame to come through')
    assert frames[-1].width == 192 and frames[-1].encoding == 'rgb8'  # default output_size
    assert 'dropped frame' in camera.output()  # a throttled warning

    def drops():
        found = {}
        for msg in diags:
            for st in msg.status:
                if st.name.endswith('camera'):
                    found = {kv.key: kv.value for kv in st.values}
        return found
    # Sensor-data QoS is best effort: each bad frame was sent three times, one must arrive.
    need = dict.fromkeys(('bad_step', 'truncated', 'unsupported_encoding', 'empty',
                          'decode_failed', 'too_large'), 1)
    try:
        probe.spin_until(lambda: all(int(drops().get(f'dropped.{k}', 0)) >= n
                                     for k, n in need.items()), 30, 'drop counts')
    except TimeoutError as exc:
        raise AssertionError(f'drop counts {drops()} short of {need}') from exc
    # An 8K frame (100 MB; it may not even cross a best-effort link), then good frames again.
    raw.publish(_eight_k())
    frames.clear()
    probe.spin_until(publish_good, 30, 'a good frame after the 8K one')
    assert camera.alive()


def test_learner_answers_every_bad_call_and_survives(start_node, probe, tmp_path):
    learner = start_node('learner_node', ['-p', f'state_dir:={tmp_path / "state"}',
                                          '-p', 'gather.rate:=50.0',
                                          '-p', 'diagnostics_period:=0.2'])
    status = probe.collect(LearnerStatus, '/learner/status', LATCHED)
    preds = probe.collect(Prediction, '/predictions', 10)
    call = probe.call

    resp = call(StartLearning, '/learner/start_learning', StartLearning.Request(), 120)
    assert not resp.success and 'nothing gathered' in resp.message
    for label, why in (('', 'empty'), ('   ', 'empty'), ('x' * 500, 'characters long'),
                       ('mug\x07', 'control character'), ('a\nb', 'control character')):
        resp = call(LabelObject, '/learner/label_object', LabelObject.Request(label=label))
        assert not resp.success and why in resp.message, resp.message
        assert resp.class_id == -1
    resp = call(LabelObject, '/learner/label_object',
                LabelObject.Request(label='mug', num_frames=100000))
    assert not resp.success and 'num_frames' in resp.message
    resp = call(ForgetClass, '/learner/forget_class', ForgetClass.Request(label='nothing'))
    assert not resp.success and 'nothing' in resp.message
    resp = call(RenameClass, '/learner/rename_class',
                RenameClass.Request(label='nothing', new_label='else'))
    assert not resp.success
    resp = call(Consolidate, '/learner/consolidate', Consolidate.Request(force=False))
    assert not resp.success and 'nothing to consolidate' in resp.message
    resp = call(Rollback, '/learner/rollback', Rollback.Request(version=0))
    assert not resp.success

    # Malformed frames straight into the learner's input: each one is taken and dropped (the
    # learner keeps only the newest frame, so each is sent until the drop count moves).
    diagnostics = probe.collect(DiagnosticArray, '/diagnostics', 10)

    def dropped() -> int:
        for msg in reversed(diagnostics):
            for st in msg.status:
                if st.name.endswith(': learner'):
                    return int(next(kv.value for kv in st.values if kv.key == 'dropped_frames'))
        return -1
    pub = probe.node.create_publisher(Image, '/frames', qos_profile_sensor_data)
    probe.spin_until(lambda: pub.get_subscription_count() > 0 and dropped() >= 0, 30,
                     'learner subscription and diagnostics')
    for msg in _bad_images()[:5]:
        before = dropped()
        probe.spin_until(lambda m=msg, b=before: pub.publish(m) or dropped() > b, 30,
                         f'the learner dropping a {msg.encoding} {msg.width}x{msg.height} frame')

    resp = call(LabelObject, '/learner/label_object', LabelObject.Request(label=' mug ',
                                                                          num_frames=5))
    assert resp.success and resp.is_new_class and resp.class_id == 0, resp.message
    resp = call(LabelObject, '/learner/label_object', LabelObject.Request(label='cup'))
    assert not resp.success and 'already gathering' in resp.message

    # Several clients at once: every call is answered.
    clients = [probe.node.create_client(ListClasses, '/learner/list_classes') for _ in range(4)]
    clients += [probe.node.create_client(LabelObject, '/learner/label_object') for _ in range(3)]
    clients += [probe.node.create_client(Trigger, '/learner/save_state') for _ in range(2)]
    probe.spin_until(lambda: all(c.service_is_ready() for c in clients), 30, 'clients')
    futures = []
    for c in clients:
        req = c.srv_type.Request()
        if isinstance(req, LabelObject.Request):
            req.label = 'cup'
        futures.append(c.call_async(req))
    probe.spin_until(lambda: all(f.done() for f in futures), 60, 'concurrent answers')
    results = [f.result() for f in futures]
    assert all(not r.success for r in results[4:7])  # still gathering 'mug'
    assert all(r.success for r in results[7:])

    def feed():
        pub.publish(_good())
        return status and status[-1].frames_gathered >= 5
    probe.spin_until(feed, 60, 'frames gathered')
    resp = call(StartLearning, '/learner/start_learning', StartLearning.Request(), 120)
    assert resp.success and resp.label == 'mug' and resp.frames_used == 5, resp.message
    resp = call(RenameClass, '/learner/rename_class',
                RenameClass.Request(label='mug', new_label='x' * 200))
    assert not resp.success
    probe.spin_until(lambda: preds, 30, 'predictions')
    assert learner.alive(), learner.output()[-3000:]
    assert status[-1].num_classes == 1


def test_learner_refuses_a_state_made_by_another_model(start_node, tmp_path):
    import torch

    from cl_core_ros.core.state_store import StateStore
    store = StateStore(tmp_path / 'state', model_signature={
        'backbone': 'mobilenet_v1', 'input_size': 128, 'deep_layer': 'conv5_4/dw'})
    store.commit({'w': torch.zeros(3)}, change='made elsewhere', classes=['mug'])
    learner = start_node('learner_node', ['-p', f'state_dir:={tmp_path / "state"}'])
    learner.proc.wait(timeout=120)
    out = learner.output()
    assert learner.proc.returncode == 3, out[-3000:]
    assert 'cannot use the learner state' in out and 'backbone' in out, out[-3000:]
    assert StateStore(tmp_path / 'state').verify().ok  # refused, not touched
