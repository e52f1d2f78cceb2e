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


# The drop reason the camera node gives each bad frame above, in order.
BAD_IMAGE_REASONS = ('bad_step', 'truncated', 'empty', 'unsupported_encoding',
                     'unsupported_encoding', 'too_large')


def _bad_compressed():
    return [CompressedImage(format='jpeg', data=b'\xff\xd8 garbage'),
            CompressedImage(format='png', data=b''),
            CompressedImage(format='tiff', data=bytes(range(256)) * 10)]


BAD_COMPRESSED_REASONS = ('decode_failed', 'empty', 'decode_failed')


def _good():
    return Image(height=120, width=160, encoding='rgb8', step=480, data=GOOD.tobytes())


def test_camera_node_drops_malformed_frames_and_keeps_working(start_node, probe):
    # 640x480 is over this node's limit.
    camera = start_node('camera_node', ['-p', 'max_rate:=200.0', '-p', 'max_pixels:=100000',
                                        '-p', 'diagnostics_period:=0.2'])
    frames = probe.collect(Image, '/frames', qos_profile_sensor_data)
    diags = probe.collect(DiagnosticArray, '/diagnostics', 50)
    raw = probe.node.create_publisher(Image, '/image_raw', qos_profile_sensor_data)
    comp = probe.node.create_publisher(CompressedImage, '/image_raw/compressed',
                                       qos_profile_sensor_data)
    probe.spin_until(lambda: raw.get_subscription_count() and comp.get_subscription_count(),
                     30, 'camera subscriptions')

    def drops():
        found = {}
        for msg in diags:
            for st in msg.status:
                if st.name.endswith('camera'):
                    found = {kv.key: kv.value for kv in st.values}
        return found

    def count(reason):
        return int(drops().get(f'dropped.{reason}', 0))
    probe.spin_until(lambda: 'received' in drops(), 30, 'camera diagnostics')
    # Sensor-data QoS is best effort, and a 640x480 frame may not cross it: each bad frame is
    # sent again until the count of its own drop reason moves.
    bad = list(zip(_bad_images(), BAD_IMAGE_REASONS)) + list(
        zip(_bad_compressed(), BAD_COMPRESSED_REASONS))
    for msg, reason in bad:
        pub = raw if isinstance(msg, Image) else comp
        before = count(reason)

        def sent_and_dropped(m=msg, p=pub, r=reason, b=before):
            p.publish(m)
            probe.spin_for(0.1)
            return count(r) > b
        try:
            probe.spin_until(sent_and_dropped, 60, f'a {reason} drop')
        except TimeoutError as exc:
            raise AssertionError(f'no {reason} drop for {type(msg).__name__} '
                                 f'{getattr(msg, "encoding", "") or msg.format}: '
                                 f'{drops()}') from exc
    assert camera.alive(), camera.output()[-3000:]

    def publish_good():
        raw.publish(_good())
        return bool(frames)
    probe.spin_until(publish_good, 30, 'a good frame to come through')
    assert frames[-1].width == 192 and frames[-1].encoding == 'rgb8'  # default output_size
    assert 'dropped frame' in camera.output()  # a throttled warning
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
