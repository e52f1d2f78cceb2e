"""Labels through a running learner: one text is one class, drawn readably, listed as taught.

The same node start also checks that ``/diagnostics`` names the state directory's filesystem
and the guarantee the store gives there.
"""

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from cl_core_ros.core.state_store import StateStore
from cl_core_ros.data.photos import render_frames
from cl_core_ros.msg import LearnerStatus, Prediction
from cl_core_ros.nodes.learner_node import _annotate, LATCHED, RELIABLE
from cl_core_ros.srv import LabelObject, ListClasses, RenameClass, StartLearning

pytestmark = [pytest.mark.ros, pytest.mark.slow]

COMPOSED = 'Tasse \u00e0 caf\u00e9 \u2615'          # as one code point per letter
DECOMPOSED = 'Tasse a\u0300 cafe\u0301 \u2615'      # letters + combining accents


def test_labels_are_text_through_the_learner_node(start_node, probe, tmp_path):
    start_node('learner_node', ['-p', f'state_dir:={tmp_path / "state"}',
                                '-p', 'gather.rate:=50.0', '-p', 'inference.smoothing_window:=1'])
    status = probe.collect(LearnerStatus, '/learner/status', LATCHED)
    predictions = probe.collect(Prediction, '/predictions', RELIABLE)
    annotated = probe.collect(Image, '/learner/annotated_image', qos_profile_sensor_data)
    diagnostics = probe.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    frames = probe.node.create_publisher(Image, '/frames', qos_profile_sensor_data)
    images = render_frames('coffee', 1, 10)
    sent = [0]

    def send(stamp: int = 0):
        img = np.ascontiguousarray(images[sent[0] % len(images)])
        sent[0] += 1
        msg = Image(height=128, width=128, encoding='rgb8', step=384, data=img.tobytes())
        msg.header.stamp.sec = stamp
        frames.publish(msg)
        return img

    def lesson(label: str):
        resp = probe.call(LabelObject, '/learner/label_object',
                          LabelObject.Request(label=label, num_frames=6), 120)
        assert resp.success, resp.message

        def gathered():
            send()
            return status and status[-1].frames_gathered >= 6
        probe.spin_until(gathered, 60, 'frames gathered')
        out = probe.call(StartLearning, '/learner/start_learning', StartLearning.Request(), 60)
        assert out.success, out.message
        return resp

    first = lesson(DECOMPOSED)
    assert first.is_new_class and first.class_id == 0
    second = lesson(COMPOSED)  # the same text typed the other way: the same class
    assert not second.is_new_class and second.class_id == 0, second.message
    listed = probe.call(ListClasses, '/learner/list_classes', ListClasses.Request())
    assert list(listed.labels) == [COMPOSED] and list(listed.class_ids) == [0]

    renamed = probe.call(RenameClass, '/learner/rename_class', RenameClass.Request(
        label=DECOMPOSED, new_label='Mug'))
    assert renamed.success, renamed.message
    similar = lesson('MUG')
    assert similar.is_new_class and "'Mug' differs only in case" in similar.message
    assert probe.call(RenameClass, '/learner/rename_class', RenameClass.Request(
        label='Mug', new_label=DECOMPOSED)).success
    listed = probe.call(ListClasses, '/learner/list_classes', ListClasses.Request())
    assert list(listed.labels) == [COMPOSED, 'MUG']

    # The annotated frame shows the label drawn from a font: exactly what the drawing code
    # makes of this frame and this prediction (no '?' in place of à, é, ☕).
    shown = {}

    def matched():
        img = send(stamp=1000 + sent[0])
        shown[1000 + sent[0] - 1] = img
        stamps = {m.header.stamp.sec for m in annotated} & {
            p.header.stamp.sec for p in predictions if COMPOSED in p.labels}
        return bool(stamps & set(shown))
    probe.spin_until(matched, 60, 'an annotated frame with the label')
    stamp = max({m.header.stamp.sec for m in annotated} & set(shown) & {
        p.header.stamp.sec for p in predictions if COMPOSED in p.labels})
    pred = next(p for p in predictions if p.header.stamp.sec == stamp)
    image = next(m for m in annotated if m.header.stamp.sec == stamp)
    got = np.frombuffer(bytes(image.data), np.uint8).reshape(image.height, image.width, 3)
    expected = _annotate(shown[stamp], pred)
    assert np.array_equal(got, expected)
    plain = _annotate(shown[stamp], type(pred)(labels=['Tasse ?? caf?? ???', 'MUG'],
                                               class_ids=list(pred.class_ids),
                                               scores=list(pred.scores), unknown=pred.unknown))
    assert not np.array_equal(got, plain)

    # /diagnostics names the filesystem of the state directory and its guarantee.
    probe.spin_until(lambda: diagnostics, 30, '/diagnostics')
    values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
    report = StateStore(tmp_path / 'state').filesystem_report()
    assert values['state_filesystem'] == report.mount
    assert values['state_guarantee'] == report.guarantee
