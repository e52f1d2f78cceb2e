"""Two robots over loopback DDS: what robot A is taught, robot B imports and recognises.

Two learner nodes run in their own processes and namespaces (``/robot_a``, ``/robot_b``). A is
taught three hard-stream objects by service calls and shares every lesson on ``/lessons``; B,
which was only taught an object of its own, accepts A's packs and then recognises A's objects on
test sessions whose backgrounds neither robot saw, as well as A does. A rollback on B removes
them; ``~/import_classes`` brings them back from a pack file; packs of another backbone and
tampered packs (by file and on the topic) are refused with reasons; B's own lesson stays.

Frames go to each learner's ``frames`` topic as the camera node makes them (centre square,
resized to the model input); the camera node itself is tested elsewhere.
"""

import shutil
import threading

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from safetensors.torch import save_file
from sensor_msgs.msg import Image
import torch

from cl_core_ros.core import mobilenet_v1
from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.learner import Learner
from cl_core_ros.core.lesson_pack import read_pack, TENSOR_FILE, write_pack
from cl_core_ros.core.preprocessing import crop_resize
from cl_core_ros.data.scenes import make_stream, short_name
from cl_core_ros.msg import LearnerStatus, LessonPack, Prediction
from cl_core_ros.nodes.fleet import pack_to_msg
from cl_core_ros.nodes.learner_node import LATCHED
from cl_core_ros.srv import (
    ExportClasses,
    ImportClasses,
    LabelObject,
    ListClasses,
    Rollback,
    StartLearning,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SIDE = 192
LESSON_FRAMES = 24
TEST_SESSIONS, TEST_FRAMES = 2, 6
COMMON = ['-p', 'gather.rate:=30.0', '-p', 'inference.smoothing_window:=1']
A, B = '/robot_a', '/robot_b'


class Feed:
    """Publishes model-ready frames of one scene at a time on a learner's ``frames`` topic."""

    def __init__(self, probe, ns: str, fps: float = 20.0):
        self.pub = probe.node.create_publisher(Image, f'{ns}/frames', qos_profile_sensor_data)
        self.frames, self.tags, self.i = None, None, 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(1.0 / fps,), daemon=True)
        self._thread.start()

    def show(self, frames: np.ndarray, tags: list[str]) -> None:
        with self._lock:
            self.frames, self.tags, self.i = frames, tags, 0

    def _run(self, period: float) -> None:
        while not self._stop.wait(period):
            with self._lock:
                if self.frames is None:
                    continue
                k = self.i % len(self.frames)
                img, tag = self.frames[k], self.tags[k]
                self.i += 1
            msg = Image(height=SIDE, width=SIDE, encoding='rgb8', step=SIDE * 3,
                        data=img.tobytes())
            msg.header.frame_id = tag
            self.pub.publish(msg)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _model_input(frames: np.ndarray) -> np.ndarray:
    return np.stack([crop_resize(f, SIDE) for f in frames])


class Robot:
    def __init__(self, probe, start_node, ns: str, state_dir, extra: list[str]):
        self.probe, self.ns = probe, ns
        self.proc = start_node('learner_node', ['-r', f'__ns:={ns}', '-p',
                                                f'state_dir:={state_dir}', *COMMON, *extra])
        self.status = probe.collect(LearnerStatus, f'{ns}/learner/status', LATCHED)
        self.preds = probe.collect(Prediction, f'{ns}/predictions', 500)
        self.feed = Feed(probe, ns)

    def srv(self, name: str) -> str:
        return f'{self.ns}/learner/{name}'

    def of(self, tag: str) -> list:
        return [m for m in self.preds if m.header.frame_id == tag]

    def teach(self, label: str, frames: np.ndarray) -> int:
        tag = f'train/{label}'
        self.feed.show(frames, [tag] * len(frames))
        self.probe.spin_until(lambda: self.of(tag), 60, f'{self.ns} sees {tag}')
        resp = self.probe.call(LabelObject, self.srv('label_object'),
                               LabelObject.Request(label=label, num_frames=len(frames)))
        assert resp.success, resp.message
        self.probe.spin_until(lambda: self.status and self.status[-1].gathering_label == label
                              and self.status[-1].frames_gathered >= len(frames), 60,
                              f'{len(frames)} frames of {label} on {self.ns}')
        resp = self.probe.call(StartLearning, self.srv('start_learning'),
                               StartLearning.Request(), 120)
        assert resp.success, resp.message
        return resp.state_version

    def top1(self, frames: np.ndarray, tags: list[str]) -> list[str]:
        """Show every frame until its own prediction came back; return the top-1 labels."""
        out = []
        for img, tag in zip(frames, tags):
            self.feed.show(img[None], [tag])
            self.probe.spin_until(lambda t=tag: self.of(t), 60, f'prediction of {tag}')
            got = self.of(tag)[0]
            out.append(got.labels[0] if len(got.labels) and not got.unknown else 'unknown')
        return out

    def classes(self) -> dict[str, str]:
        resp = self.probe.call(ListClasses, self.srv('list_classes'), ListClasses.Request())
        return dict(zip(resp.labels, resp.origins))


def _accuracy(robot: Robot, tests: dict, run: str) -> float:
    hits = total = 0
    for label, frames in tests.items():
        tags = [f'{run}/{label}/{i}' for i in range(len(frames))]
        answers = robot.top1(frames, tags)
        hits += sum(a == label for a in answers)
        total += len(answers)
    return 100.0 * hits / total


def _other_backbone_pack(tmp_path):
    torch.manual_seed(0)
    state = {k: v.clone() for k, v in
             mobilenet_v1.stages_state_dict(mobilenet_v1.build_stages()).items()}
    for key, value in state.items():
        if key.endswith('running_var'):
            value.uniform_(0.5, 1.5)
    save_file(state, str(tmp_path / 'mobilenet.safetensors'))
    other = Learner(LearnerConfig(backbone='mobilenet_v1', fast_buffer_size=20,
                                  deep_buffer_size=20,
                                  mobilenet_weights=str(tmp_path / 'mobilenet.safetensors')))
    other.learn('gizmo', other.encode(torch.rand(6, 3, SIDE, SIDE)))
    path, _, _ = write_pack(other.export_classes(None, origin='/robot_c/learner'),
                            tmp_path / 'other_backbone')
    return path


def test_robot_b_recognises_what_robot_a_was_taught(start_node, probe, tmp_path):
    stream = make_stream(n_taught=4, n_never_taught=0, seed=0)
    *shared, own = stream.taught
    labels = {obj: short_name(obj) for obj in stream.taught}
    robot_a = Robot(probe, start_node, A, tmp_path / 'a', ['-p', 'fleet.share:=true'])
    robot_b = Robot(probe, start_node, B, tmp_path / 'b',
                    ['-p', f'fleet.accept:=[{A}]', '-p', 'fleet.on_clash:=refuse'])
    tests = {labels[o]: _model_input(np.concatenate([stream.frames(o, 'test', s, TEST_FRAMES)
                                                     for s in range(TEST_SESSIONS)]))
             for o in stream.taught}
    shared_tests = {labels[o]: tests[labels[o]] for o in shared}
    own_test = {labels[own]: tests[labels[own]]}
    try:
        own_version = robot_b.teach(labels[own],
                                    _model_input(stream.frames(own, 'train', 0, LESSON_FRAMES)))
        for obj in shared:
            robot_a.teach(labels[obj], _model_input(stream.frames(obj, 'train', 0,
                                                                  LESSON_FRAMES)))
        # B learns A's lessons from the latched topic, without a frame of them
        origin = f'{A}/learner'
        want = {labels[o]: origin for o in shared} | {labels[own]: 'local'}
        probe.spin_until(lambda: robot_b.classes() == want, 90, f'B to import {want}')

        acc_a = _accuracy(robot_a, shared_tests, 'a')
        acc_b_topic = _accuracy(robot_b, shared_tests, 'b-topic')
        own_after_topic = _accuracy(robot_b, own_test, 'b-own-topic')

        resp = probe.call(Rollback, robot_b.srv('rollback'), Rollback.Request(
            version=own_version))
        assert resp.success, resp.message
        assert robot_b.classes() == {labels[own]: 'local'}
        gone = robot_b.top1(shared_tests[labels[shared[0]]][:4],
                            [f'gone/{i}' for i in range(4)])
        assert not set(gone) & set(shared_tests), gone

        resp = probe.call(ExportClasses, robot_a.srv('export_classes'), ExportClasses.Request(
            labels=[], path=str(tmp_path / 'pack_a')))
        assert resp.success and sorted(resp.labels) == sorted(shared_tests), resp.message
        pack_bytes = resp.size_bytes
        resp = probe.call(ImportClasses, robot_b.srv('import_classes'), ImportClasses.Request(
            path=str(tmp_path / 'pack_a'), on_clash='refuse'), 120)
        assert resp.success, resp.message
        assert sorted(resp.labels) == sorted(shared_tests) and set(resp.actions) == {'new'}
        assert robot_b.classes() == want
        acc_b_file = _accuracy(robot_b, shared_tests, 'b-file')

        # refused with reasons, nothing changed: another backbone, a tampered file
        resp = probe.call(ImportClasses, robot_b.srv('import_classes'), ImportClasses.Request(
            path=str(_other_backbone_pack(tmp_path)), on_clash='merge'))
        assert not resp.success and 'another backbone' in resp.message, resp.message
        assert "'backbone' differs" in resp.message
        tampered = tmp_path / 'tampered'
        shutil.copytree(tmp_path / 'pack_a', tampered)
        data = bytearray((tampered / TENSOR_FILE).read_bytes())
        data[len(data) // 2] ^= 0x40
        (tampered / TENSOR_FILE).write_bytes(bytes(data))
        resp = probe.call(ImportClasses, robot_b.srv('import_classes'), ImportClasses.Request(
            path=str(tampered), on_clash='merge'))
        assert not resp.success and 'tampered' in resp.message, resp.message
        # ... and on the topic, under A's name
        msg, _, _ = pack_to_msg(read_pack(tmp_path / 'pack_a')[0])
        msg.tensors[len(msg.tensors) // 2] ^= 0x40
        pub = probe.node.create_publisher(LessonPack, '/lessons', QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        pub.publish(msg)
        probe.spin_until(lambda: 'tampered pack' in robot_b.proc.output(), 30,
                         'B to refuse the tampered pack on /lessons')
        assert robot_b.classes() == want
        own_at_end = _accuracy(robot_b, own_test, 'b-own-end')

        # an export with no path is published on /lessons, latched, under A's name
        heard = probe.collect(LessonPack, '/lessons', LATCHED)
        one = labels[shared[0]]
        resp = probe.call(ExportClasses, robot_a.srv('export_classes'), ExportClasses.Request(
            labels=[one], path=''))
        assert resp.success and resp.path == '' and list(resp.labels) == [one], resp.message
        probe.spin_until(lambda: any(m.pack_sha256 == resp.pack_sha256 for m in heard), 30,
                         'the exported pack on /lessons')
        msg = next(m for m in heard if m.pack_sha256 == resp.pack_sha256)
        assert list(msg.labels) == [one] and msg.origin == origin, (msg.labels, msg.origin)
        assert len(msg.tensors) + len(msg.manifest.encode()) == resp.size_bytes
    finally:
        robot_a.feed.close()
        robot_b.feed.close()
    assert robot_a.proc.alive() and robot_b.proc.alive(), robot_b.proc.tail()
    summary = (f'top-1 on {len(shared)} objects x {TEST_SESSIONS} test sessions x '
               f'{TEST_FRAMES} frames: A {acc_a:.1f}%, B by topic {acc_b_topic:.1f}%, '
               f'B by import_classes {acc_b_file:.1f}%; B own object {own_after_topic:.1f}% '
               f'after the topic import, {own_at_end:.1f}% at the end; pack of '
               f'{len(shared)} classes {pack_bytes / 1e6:.2f} MB')
    print(summary)
    assert acc_a >= 60.0, summary
    assert acc_b_topic >= acc_a - 3.0 and acc_b_file >= acc_a - 3.0, summary
    assert own_after_topic >= 75.0 and own_at_end >= 75.0, summary
