"""Run a NICv2-style continual-learning protocol on CORe50 and report accuracy per experience.

``--source`` chooses the objects:

``core50`` (default)
    a folder in the CORe50 layout (``--root``): the NICv2 stream of
    :func:`cl_core_ros.tools.protocol.build_protocol`.
``hard``
    the hard stream (:mod:`cl_core_ros.data.scenes`: photographic objects over photographic
    backgrounds, train and test sessions never sharing a background), rendered on demand, no
    ``--root``: ``--hard-objects`` taught objects, a first round teaching every object once
    (one object-session of ``--frames-per-experience`` frames per experience, seeded order), then
    ``--rounds`` - 1 more rounds bringing a new training session of every known object; the test
    set is ``--test-frames-per-session`` frames of every object in each of 4 test sessions
    (:func:`cl_core_ros.tools.protocol.build_generated_protocol`).
``photos``
    the same stream over scikit-image's photos filmed in sessions
    (:mod:`cl_core_ros.data.photos`).

Generated frames are ``--frame-size`` (default 640x480, a camera's resolution). Both modes work
with every source; in ros mode the generated frames are written to bags like CORe50's.

Two modes teach the same stream (:func:`cl_core_ros.tools.protocol.build_protocol`, same seed,
same experience order):

``--mode fast``
    calls the core :class:`~cl_core_ros.core.learner.Learner` directly: encode the lesson's
    frames, ``learn`` (fast head update), ``consolidate`` every N experiences, evaluate on the
    test frames after every experience. Deterministic for a seed: the numbers to quote, to tune
    with, and to compare against the published results on the full data set.
``--mode ros``
    the real nodes (camera and learner, started with ``bringup`` in a subprocess on
    loopback-only DDS, with a fresh state directory under ``--out``): the needed object-sessions
    are converted to rosbag2 bags (or taken from ``--bags``); each lesson is
    ``~/label_object(label, n)``, then the lesson's bag is played into ``image_raw`` with
    :class:`~cl_core_ros.tools.play_bag.BagPlayer` until the learner's status shows the frames
    gathered, then ``~/start_learning``; consolidation is ``~/consolidate``. Evaluation streams
    the test bags through the camera and learner nodes and matches every ``predictions`` message
    to the frame played by its header stamp. Frames are played in lock step (the next frame goes
    out when the prediction of the previous one arrived), so none is dropped by the nodes'
    "newest frame only" policy and every test frame gets exactly one prediction.

Outputs in ``--out``: ``accuracy.csv`` (one row per experience, numbered from 1: lessons, classes
seen, accuracy on the whole test set, on the classes seen so far and per category, seconds of
the update, of consolidation and of evaluation), ``summary.json`` (final and average accuracy,
forgetting, backward transfer, timings, the protocol with its experience order, mode, seed) and
``accuracy.png`` (accuracy vs experience, overall and per category).

Accuracy is closed-set top-1 (the "unknown" flag is ignored, as in the CORe50 papers), per
frame, without temporal smoothing (the nodes run with ``inference.smoothing_window: 1``).

Usage::

    python -m cl_core_ros.tools.run_protocol --root DIR --out DIR [--mode fast|ros] [--seed N]
        [--experiences N] [--frames-per-experience N] [--test-frames-per-session N]
        [--classes object|category] [--consolidate-every N] [--bags DIR] [--first-objects N]
        [--objects O ...] [--test-sessions S ...] [--eval-every N] [--bag-format raw|png]
    python -m cl_core_ros.tools.run_protocol --source hard|photos --out DIR [--mode fast|ros]
        [--hard-objects N] [--rounds N] [--frame-size WxH] [the options above but --root,
        --first-objects, --objects and --test-sessions]
"""

import argparse
from collections.abc import Callable, Sequence
import contextlib
import csv
from dataclasses import dataclass, field
import json
import logging
import math
import os
from pathlib import Path
import shutil
import sys
import threading
import time

import numpy as np

from cl_core_ros.core.heap import fix_heap_thresholds
from cl_core_ros.core.metrics import accuracy, AccuracyMatrix, per_class_accuracy
from cl_core_ros.data.core50 import Core50Error
from cl_core_ros.data.core50_filelists import (
    FilelistError,
    read_official_run,
    REDUCED_TEST_FILELIST,
    SCENARIOS,
    TEST_FILELIST,
)
from cl_core_ros.data.generated import DEFAULT_FRAME_SIZE, make_source, SourceError
from cl_core_ros.tools.node_process import executable_path, NodeProcess
from cl_core_ros.tools.protocol import (
    build_generated_protocol,
    build_official_protocol,
    build_protocol,
    CATEGORY_NAMES,
    CLASS_MODES,
    DEFAULT_FIRST_OBJECTS,
    DEFAULT_GENERATED_FRAMES,
    DEFAULT_GENERATED_TEST_FRAMES,
    DEFAULT_ROUNDS,
    DEFAULT_SCENARIO,
    Lesson,
    Protocol,
    ProtocolError,
)

logger = logging.getLogger(__name__)

MODES = ('fast', 'ros')
SOURCES = ('core50', 'hard', 'photos')
DEFAULT_HARD_OBJECTS = 8
BAG_FORMATS = ('raw', 'png')
DEFAULT_ROS_TEST_FRAMES = 10
DEFAULT_CONSOLIDATE_EVERY = 1  # AR1*: the deep update after every experience
CSV_NAME, SUMMARY_NAME, PLOT_NAME = 'accuracy.csv', 'summary.json', 'accuracy.png'
# What the methods reached on the full NICv2-391 with the official runs (mean and standard
# deviation over runs where the papers give them): Lomonaco, Maltoni, Pellegrini, CVPR-W 2020
# (AR1*, CWR* and the others, no replay); Pellegrini et al., IROS 2020 (latent replay).
# Which setting of this runner is closest to which row: see the README.
PUBLISHED_NICV2_391 = {
    'AR1*-free + latent replay conv5_4/dw, 1500 patterns (PyTorch)': {'mean': 0.77, 'std': None},
    'AR1*-free + latent replay, 500 patterns (users)': {'mean': 0.636, 'std': None},
    'AR1* without replay': {'mean': 0.563, 'std': 0.011},
    'CWR* without replay': {'mean': 0.570, 'std': 0.010},
    'naive fine-tuning': {'mean': 0.080, 'std': None},
    'EWC': {'mean': 0.054, 'std': None},
    'LwF': {'mean': 0.078, 'std': None},
}
PUBLISHED = {'nicv2_391': PUBLISHED_NICV2_391}
AGGREGATE_CSV = 'runs.csv'
_ENCODE_CHUNK = 64
STATE_GATHERING = 1  # cl_core_ros/msg/LearnerStatus.STATE_GATHERING


# --- scoring ----------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """Accuracy on the test frames after one experience (fractions in [0, 1], NaN if none)."""

    accuracy: float
    accuracy_seen: float
    per_category: dict[int, float]
    per_class: dict[str, float]
    frames: int
    answered: int
    seconds: float = 0.0


def score(protocol: Protocol, objects: Sequence[int], predicted: Sequence[str | None],
          seen: set[str]) -> Evaluation:
    """Score predicted labels (None: no prediction) of test frames of the given objects.

    Args:
        protocol: gives the class of an object and the list of classes.
        objects: the true object of every test frame.
        predicted: the top-1 label predicted for every frame (None when there was none).
        seen: classes taught so far (for ``accuracy_seen`` and the per-class accuracies).

    """
    index = {label: k for k, label in enumerate(protocol.class_labels)}
    truth = np.array([index[protocol.label_of(o)] for o in objects], dtype=int)
    guess = np.array([index.get(p, -1) if p else -1 for p in predicted], dtype=int)
    categories = np.array([protocol.category_of(o) for o in objects], dtype=int)
    seen_mask = np.array([protocol.label_of(o) in seen for o in objects], dtype=bool)
    per_category = {c: accuracy(guess[categories == c], truth[categories == c])
                    for c in protocol.categories}
    labels = protocol.class_labels
    per_class = {labels[k]: v for k, v in per_class_accuracy(guess, truth).items()
                 if labels[k] in seen}
    return Evaluation(
        accuracy=accuracy(guess, truth), accuracy_seen=accuracy(guess[seen_mask],
                                                                truth[seen_mask]),
        per_category=per_category, per_class=per_class, frames=len(truth),
        answered=sum(p is not None for p in predicted))


@dataclass
class ExperienceRecord:
    """What happened in one experience."""

    index: int
    lessons: list[tuple[int, int]]
    new_classes: list[str]
    classes_seen: int
    frames_used: int
    update_seconds: float
    consolidation_seconds: float = 0.0
    experience_seconds: float = 0.0
    encode_seconds: float = 0.0
    evaluation: Evaluation | None = None


@dataclass
class RunResult:
    """Everything a runner reports."""

    mode: str
    records: list[ExperienceRecord] = field(default_factory=list)
    setup_seconds: float = 0.0
    wall_seconds: float = 0.0
    consolidations: int = 0
    extra: dict = field(default_factory=dict)


def _should_eval(exp_index: int, total: int, eval_every: int) -> bool:
    return (exp_index + 1) % eval_every == 0 or exp_index == total - 1


def _should_consolidate(exp_index: int, every: int) -> bool:
    return every > 0 and (exp_index + 1) % every == 0


def _log_experience(protocol: Protocol, record: ExperienceRecord) -> None:
    ev = record.evaluation
    lessons = ' '.join(f's{s}/o{o}' for s, o in record.lessons)
    new = f' new {",".join(record.new_classes)}' if record.new_classes else ''
    accuracy_text = (f'accuracy {ev.accuracy:.1%} (seen classes {ev.accuracy_seen:.1%})'
                     if ev else 'not evaluated')
    logger.info('experience %d/%d: %s%s: %s; update %.3f s', record.index + 1,
                len(protocol.experiences), lessons, new, accuracy_text, record.update_seconds)


# --- fast mode: the core learner, directly ----------------------------------------------------

def run_fast(protocol: Protocol, *, consolidate_every: int = DEFAULT_CONSOLIDATE_EVERY,
             eval_every: int = 1, config=None) -> RunResult:
    """Teach the protocol to a core Learner directly and evaluate after every experience.

    An experience of several lessons (a CORe50 batch of several object-sessions) is learned
    jointly, in one :meth:`~cl_core_ros.core.learner.Learner.learn_experience` call.
    ``consolidate_every``: deep consolidation after every N experiences (0: fast updates only).

    Test frames are encoded once; after a consolidation their pool vectors are recomputed from
    the stored deep latents by ``predict_latents`` (the layers below the deep layer never
    change). ``config``: a LearnerConfig (default: the defaults, which the nodes' YAML uses).
    """
    from cl_core_ros.core.learner import Latents, Learner, LearnerConfig

    started = time.perf_counter()
    learner = Learner(config or LearnerConfig())
    result = RunResult(mode='fast', extra={'learner_config': learner.config.to_dict()})
    test_objects = [f.object for f in protocol.test_frames]
    parts = []
    for i in range(0, len(protocol.test_frames), _ENCODE_CHUNK):
        chunk = protocol.test_frames[i:i + _ENCODE_CHUNK]
        parts.append(learner.encode_images([f.read() for f in chunk]))
    test_latents = Latents.cat(parts)
    result.setup_seconds = time.perf_counter() - started
    logger.info('fast mode: learner ready, %d test frames encoded in %.1f s',
                len(test_objects), result.setup_seconds)
    seen: set[str] = set()
    total = len(protocol.experiences)
    for exp in protocol.experiences:
        exp_start = time.perf_counter()
        record = ExperienceRecord(exp.index, [lesson.key for lesson in exp.lessons],
                                  list(exp.new_classes), 0, 0, 0.0)
        batch = []
        for lesson in exp.lessons:
            t0 = time.perf_counter()
            batch.append((lesson.label, learner.encode_images([f.read()
                                                               for f in lesson.frames])))
            record.encode_seconds += time.perf_counter() - t0
            seen.add(lesson.label)
        # a batch of several object-sessions is ONE experience, learned jointly
        report = (learner.learn(*batch[0]) if len(batch) == 1
                  else learner.learn_experience(batch))
        record.update_seconds += report.seconds
        record.frames_used += report.frames_used
        record.classes_seen = len(seen)
        if _should_consolidate(exp.index, consolidate_every):
            report = learner.consolidate()
            record.consolidation_seconds = report.seconds
            result.consolidations += int(report.changed)
        record.experience_seconds = time.perf_counter() - exp_start
        if _should_eval(exp.index, total, eval_every):
            t0 = time.perf_counter()
            predictions = learner.predict_latents(test_latents)
            predicted = [p.labels[0] if p.labels else None for p in predictions]
            record.evaluation = score(protocol, test_objects, predicted, seen)
            record.evaluation.seconds = time.perf_counter() - t0
        result.records.append(record)
        _log_experience(protocol, record)
    result.wall_seconds = time.perf_counter() - started
    return result


# --- ros mode: bags played through the nodes --------------------------------------------------

def convert_protocol_bags(protocol: Protocol, bags_dir: Path, *,
                          image_format: str = 'png') -> dict:
    """Write the protocol's frames as bags: ``train/`` per object-session, ``test/`` per session.

    Only the frames the protocol uses go in (the subsampled CORe50 ones keep their frame
    numbers, hence their stamps); generated frames are rendered into the bags, whose custom data
    then also records the source (:meth:`GeneratedSource.describe`) under ``source``. Returns
    {'train': [...], 'test': [...], 'seconds': s}.
    """
    from cl_core_ros.data.core50 import ScanIssue
    from cl_core_ros.tools.core50_to_bag import bag_name, write_bag

    started = time.perf_counter()
    extra = {'source': protocol.source.describe()} if protocol.generated else None
    written = {}
    for part, frames, per in (
            ('train', [f for lesson in protocol.lessons() for f in lesson.frames],
             'object-session'),
            ('test', protocol.test_frames, 'session')):
        groups: dict[tuple[int, ...], dict[int, list]] = {}
        for frame in frames:
            key = (frame.session, frame.object) if per == 'object-session' else (frame.session,)
            groups.setdefault(key, {}).setdefault(frame.object, []).append(frame)
        issues: list[ScanIssue] = []
        written[part] = []
        for key, by_object in sorted(groups.items()):
            sequences = [sorted(set(by_object[obj])) for obj in sorted(by_object)]
            summary = write_bag(bags_dir / part / bag_name(*key), sequences, per=per,
                                image_format=image_format, overwrite=True, extra=extra,
                                issues=issues)
            if issues:
                raise ProtocolError(f'{len(issues)} frame(s) could not be converted: '
                                    f'{issues[0]}')
            written[part].append(str(summary.path))
    written['seconds'] = time.perf_counter() - started
    logger.info('converted %d training and %d test bags under %s in %.1f s',
                len(written['train']), len(written['test']), bags_dir, written['seconds'])
    return written


def index_bags(protocol: Protocol, bags_dir: Path) -> tuple[dict, list[Path]]:
    """Find the bag of every lesson and the test bags under ``bags_dir`` (from their metadata).

    Returns ({(session, object): bag}, [test bags]); raises ProtocolError naming what is missing.
    """
    from cl_core_ros.tools.bag_reader import bag_info, find_bags

    lesson_bags: dict[tuple[int, int], Path] = {}
    test_bags: list[Path] = []
    # bags of a generated source match only the same source (objects, seed, frame size)
    wanted_source = (json.loads(json.dumps(protocol.source.describe()))
                     if protocol.generated else None)
    for bag in find_bags(bags_dir):
        meta = bag_info(bag).core50
        if not meta or meta.get('source') != wanted_source:
            continue
        sessions, objects = meta.get('sessions', []), meta.get('objects', [])
        if len(sessions) == 1 and len(objects) == 1 and sessions[0] in protocol.train_sessions:
            lesson_bags.setdefault((sessions[0], objects[0]), bag)
        elif sessions and set(sessions) <= set(protocol.test_sessions) \
                and set(objects) & set(protocol.objects):
            test_bags.append(bag)
    missing = [f's{s}/o{o}' for s, o in dict.fromkeys(x.key for x in protocol.lessons())
               if (s, o) not in lesson_bags]
    hint = ('' if wanted_source is None else f' written for this --source '
            f'{protocol.source.name} (same objects, --seed and --frame-size)')
    if missing:
        raise ProtocolError(f'no object-session bag{hint} under {bags_dir} for {len(missing)} '
                            f'lesson(s): {", ".join(missing[:10])}')
    if not test_bags:
        raise ProtocolError(f'no bag{hint} of the test sessions {list(protocol.test_sessions)} '
                            f'under {bags_dir}')
    return lesson_bags, test_bags


def ros_params(out_path: Path, *, frames_default: int = 100) -> Path:
    """Write the nodes' parameters for a protocol run: the installed YAML plus overrides.

    Overrides: no temporal smoothing (per-frame accuracy), gathering at the fastest rate the
    parameter allows with one frame enough, no rate limits that would drop lock-step frames, no
    annotated images, two stored versions kept.
    """
    import yaml

    from cl_core_ros.nodes.runtime import share_dir

    with (share_dir() / 'config' / 'learner.yaml').open('r', encoding='utf-8') as stream:
        params = yaml.safe_load(stream)
    camera = params['/**/camera']['ros__parameters']
    camera['max_rate'] = 240.0
    learner = params['/**/learner']['ros__parameters']
    learner.setdefault('gather', {}).update(
        {'rate': 60.0, 'min_frames': 1, 'frames': frames_default, 'timeout': 120.0})
    learner.setdefault('inference', {}).update({'max_rate': 1000.0, 'smoothing_window': 1})
    learner['annotated_image'] = False
    learner['state_keep'] = 2
    params['/**/consolidation']['ros__parameters']['enabled'] = False
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open('w', encoding='utf-8') as stream:
        yaml.safe_dump(params, stream, sort_keys=False)
    return out_path


def _read_yaml(path: Path) -> dict:
    import yaml

    with path.open('r', encoding='utf-8') as stream:
        return yaml.safe_load(stream)


class NodeLauncher(NodeProcess):
    """``bringup`` (camera + learner) in its own process group; stopped on :meth:`stop`."""

    def __init__(self, params_file: Path, state_dir: Path, env: dict[str, str], log_path: Path,
                 nodes: str = 'camera,learner'):
        cmd = [sys.executable, str(executable_path('bringup')), '--params-file',
               str(params_file), '--state-dir', str(state_dir), '--nodes', nodes]
        super().__init__(cmd, env, log_path)
        logger.info('started bringup (pid %d), log %s', self.proc.pid, log_path)


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for the block, then restore the previous ones."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class RosSession:
    """The runner's own node: service clients, predictions by stamp, status, a bag player."""

    def __init__(self, launcher: NodeLauncher, *, frame_timeout: float = 5.0,
                 gather_rate: float = 60.0):
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        from cl_core_ros.msg import LearnerStatus, Prediction
        from cl_core_ros.srv import Consolidate, LabelObject, StartLearning
        from cl_core_ros.tools.play_bag import BagPlayer

        self.launcher = launcher
        self.frame_timeout = frame_timeout
        self.min_frame_period = 1.5 / gather_rate  # never faster than the learner gathers
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('protocol_runner', context=self.context)
        self._cv = threading.Condition()
        self._predictions: dict[int, object] = {}
        self.status = None
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Prediction, '/predictions', self._on_prediction,
                                      reliable)
        self.node.create_subscription(LearnerStatus, '/learner/status', self._on_status,
                                      latched)
        self.srv = {
            'label': (LabelObject, self.node.create_client(LabelObject,
                                                           '/learner/label_object')),
            'learn': (StartLearning, self.node.create_client(StartLearning,
                                                             '/learner/start_learning')),
            'consolidate': (Consolidate, self.node.create_client(Consolidate,
                                                                 '/learner/consolidate')),
        }
        self.player = BagPlayer(self.node)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._spinning = True
        self._spinner = threading.Thread(target=self._spin, name='ros-spin', daemon=True)
        self._spinner.start()
        self.missing_predictions = 0
        self.stale_predictions = 0

    def _spin(self) -> None:
        while self._spinning and self.context.ok():
            self.executor.spin_once(timeout_sec=0.1)

    def _on_prediction(self, msg) -> None:
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._cv:
            self._predictions[stamp] = msg
            self._cv.notify_all()

    def _on_status(self, msg) -> None:
        with self._cv:
            self.status = msg
            self._cv.notify_all()

    def check_alive(self) -> None:
        """Raise RuntimeError (with the nodes' log) if the nodes died."""
        if not self.launcher.alive():
            raise RuntimeError(f'the nodes exited (code {self.launcher.proc.returncode}):\n'
                               f'{self.launcher.tail()}')

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait (bounded) for ``condition`` to hold; TimeoutError naming ``what``."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.check_alive()
                    raise TimeoutError(f'timed out after {timeout:.0f} s waiting for {what}')
                self._cv.wait(min(remaining, 1.0))
                if not self.launcher.alive():
                    self.check_alive()

    def _wait_service(self, client, deadline: float) -> None:
        while not client.service_is_ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f'service {client.srv_name} did not appear')
            client.wait_for_service(timeout_sec=0.5)

    def call(self, name: str, timeout: float = 60.0, **fields):
        """Call one of the learner's services and return the response."""
        srv_type, client = self.srv[name]
        deadline = time.monotonic() + timeout
        self._wait_service(client, deadline)
        done = threading.Event()
        future = client.call_async(srv_type.Request(**fields))
        future.add_done_callback(lambda _f: done.set())
        while not done.wait(0.5):
            self.check_alive()
            if time.monotonic() > deadline:
                client.remove_pending_request(future)
                raise TimeoutError(f'no answer from {client.srv_name} in {timeout} s')
        return future.result()

    def wait_ready(self, timeout: float) -> None:
        """Wait for the learner's services and its latched status."""
        deadline = time.monotonic() + timeout
        for _srv_type, client in self.srv.values():
            self._wait_service(client, deadline)
        self.wait(lambda: self.status is not None, timeout, 'the learner status')

    def play_lockstep(self, bag: Path, *, on_frame: Callable[[int, object], None] | None = None,
                      stop: threading.Event | None = None,
                      on_label: Callable[[int, object], None] | None = None,
                      frame_timeout: float | None = None) -> int:
        """Play a bag one frame at a time: each image waits for its prediction (bounded).

        ``on_frame(stamp_ns, prediction or None)`` gets each image's prediction; labels on the
        label topic go to ``on_label(stamp_ns, FrameLabel)``. Returns the images published.
        """
        from cl_core_ros.tools.bag_reader import FrameLabel, LABEL_TOPIC, stamp_to_ns

        frame_timeout = self.frame_timeout if frame_timeout is None else frame_timeout
        stop = stop or threading.Event()
        with self._cv:
            self._predictions.clear()
        count = 0

        def on_message(topic: str, bag_stamp_ns: int, msg) -> None:
            nonlocal count
            if topic == LABEL_TOPIC:
                if on_label is not None:
                    label = FrameLabel.from_json(msg.data)
                    on_label(label.stamp_ns if label.stamp_ns is not None else bag_stamp_ns,
                             label)
                return
            if not hasattr(msg, 'header'):
                return
            count += 1
            published = time.monotonic()
            stamp = stamp_to_ns(msg.header.stamp)
            try:
                self.wait(lambda: stamp in self._predictions, frame_timeout,
                          f'the prediction of frame {stamp}')
                with self._cv:
                    prediction = self._predictions.pop(stamp)
            except TimeoutError:
                self.check_alive()
                prediction = None
                self.missing_predictions += 1
            if on_frame is not None:
                on_frame(stamp, prediction)
            # pace: the learner gathers at most one frame per 1/gather.rate seconds
            pause = self.min_frame_period - (time.monotonic() - published)
            if pause > 0 and not stop.is_set():
                stop.wait(pause)

        self.player.play(bag, rate=0.0, stop_event=stop, on_message=on_message)
        return count

    def warm_up(self, bag: Path, timeout: float) -> None:
        """Stream a bag until the first prediction comes back (discovery along the pipeline)."""
        got = threading.Event()
        deadline = time.monotonic() + timeout
        image_pubs = [p for p in self.player.prepare(bag) if 'image' in p.topic_name]
        while not all(p.get_subscription_count() > 0 for p in image_pubs):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError('the camera node never subscribed to the image topic')
            time.sleep(0.05)
        while not got.is_set():
            if time.monotonic() > deadline:
                raise TimeoutError(f'no prediction came back within {timeout:.0f} s')
            self.play_lockstep(bag, stop=got, frame_timeout=0.5,
                               on_frame=lambda _s, p: got.set() if p is not None else None)
        self.missing_predictions = 0

    def close(self) -> None:
        """Stop spinning, destroy the node and shut this context down."""
        self._spinning = False
        self._spinner.join(timeout=5.0)
        self.player.close()
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _gather_lesson(session: RosSession, lesson: Lesson, bag: Path, frames_wanted: int | None,
                   *, add_to_batch: bool = False, max_passes: int = 3) -> None:
    """label_object, then play the lesson's bag until its frames are gathered."""
    from cl_core_ros.tools.bag_reader import bag_info, IMAGE_TYPES

    info = bag_info(bag)
    in_bag = sum(count for msgtype, count in info.topics.values() if msgtype in IMAGE_TYPES)
    target = min(in_bag, frames_wanted or in_bag, 1000)
    resp = session.call('label', label=lesson.label, num_frames=target,
                        add_to_batch=add_to_batch)
    if not resp.success:
        raise RuntimeError(f'label_object({lesson.label!r}) refused: {resp.message}')
    # the status topic is in order: once it shows this gathering start, no older status follows
    session.wait(lambda: session.status.state == STATE_GATHERING and
                 session.status.gathering_label == lesson.label and
                 session.status.frames_gathered == 0, 30.0, f'gathering of {lesson.label}')

    def gathered() -> bool:
        s = session.status
        return s is not None and s.gathering_label == lesson.label and \
            s.frames_gathered >= target

    enough = threading.Event()
    for attempt in range(max_passes):
        session.play_lockstep(bag, stop=enough,
                              on_frame=lambda _s, _p: enough.set() if gathered() else None)
        try:
            session.wait(gathered, 2.0, f'{target} frames of {lesson.label} gathered')
            break
        except TimeoutError:
            s = session.status
            logger.warning('lesson s%d/o%d: %d of %d frames gathered after pass %d; playing '
                           'the bag again', lesson.session, lesson.object,
                           s.frames_gathered if s else 0, target, attempt + 1)


def _teach_experience(session: RosSession, lessons: Sequence[Lesson], lesson_bags: dict,
                      frames_wanted: int | None):
    """Gather every lesson of an experience into one batch, then one start_learning."""
    for k, lesson in enumerate(lessons):
        _gather_lesson(session, lesson, lesson_bags[lesson.key], frames_wanted,
                       add_to_batch=k > 0)
    resp = session.call('learn', timeout=600.0)
    if not resp.success:
        labels = ', '.join(lesson.label for lesson in lessons)
        raise RuntimeError(f'start_learning for {labels!r} failed: {resp.message}')
    return resp


def _evaluate_ros(session: RosSession, protocol: Protocol, test_bags: list[Path],
                  seen: set[str], model_version: int) -> Evaluation:
    """Stream the test bags through the nodes; score the predictions matched by stamp."""
    started = time.perf_counter()
    objects: list[int] = []
    predicted: list[str | None] = []
    wanted = set(protocol.objects)
    for bag in test_bags:
        labels: dict[int, object] = {}
        frames: dict[int, object] = {}
        session.play_lockstep(bag, on_frame=frames.__setitem__, on_label=labels.__setitem__)
        for stamp, prediction in sorted(frames.items()):
            label = labels.get(stamp)
            if label is None or label.object not in wanted:
                continue
            if prediction is not None and prediction.model_version < model_version:
                session.stale_predictions += 1
            objects.append(label.object)
            predicted.append(prediction.labels[0] if prediction is not None and
                             len(prediction.labels) else None)
    evaluation = score(protocol, objects, predicted, seen)
    evaluation.seconds = time.perf_counter() - started
    return evaluation


def run_ros(protocol: Protocol, out_dir: Path, *, bags_dir: Path | None = None,
            consolidate_every: int = DEFAULT_CONSOLIDATE_EVERY, eval_every: int = 1,
            bag_format: str = 'png',
            startup_timeout: float = 180.0) -> RunResult:
    """Teach the protocol through the camera and learner nodes (see the module docstring)."""
    from cl_core_ros.loopback import loopback_env

    started = time.perf_counter()
    ros_dir = out_dir / 'ros'
    ros_dir.mkdir(parents=True, exist_ok=True)
    result = RunResult(mode='ros')
    if bags_dir is None:
        bags_dir = out_dir / 'bags'
        conversion = convert_protocol_bags(protocol, bags_dir, image_format=bag_format)
        result.extra['bag_conversion_seconds'] = conversion['seconds']
    lesson_bags, test_bags = index_bags(protocol, bags_dir)
    result.extra['bags_dir'] = str(bags_dir)
    state_dir = ros_dir / 'state'
    if state_dir.exists():
        shutil.rmtree(state_dir)  # a fresh learner: nothing known
    params = ros_params(ros_dir / 'params.yaml')
    result.extra['node_parameters'] = _read_yaml(params)
    env = loopback_env(ros_dir / 'log')
    result.extra.update({'state_dir': str(state_dir), 'params_file': str(params),
                         'ros_domain_id': int(env['ROS_DOMAIN_ID'])})
    launcher = NodeLauncher(params, state_dir, env, ros_dir / 'bringup.log')
    session = None
    try:
        with _environment({k: v for k, v in env.items()
                           if k.startswith(('ROS_', 'RMW_', 'FASTDDS_', 'AMENT_'))}):
            session = RosSession(launcher)
            session.wait_ready(startup_timeout)
            session.warm_up(test_bags[0], startup_timeout)
            result.setup_seconds = time.perf_counter() - started
            logger.info('ros mode: nodes ready in %.1f s (domain %s)', result.setup_seconds,
                        env['ROS_DOMAIN_ID'])
            _run_ros_stream(session, protocol, result, lesson_bags, test_bags,
                            consolidate_every, eval_every)
            result.extra.update({'missing_predictions': session.missing_predictions,
                                 'stale_predictions': session.stale_predictions})
    finally:
        if session is not None:
            session.close()
        code = launcher.stop()
        logger.info('bringup stopped (exit code %s)', code)
    result.wall_seconds = time.perf_counter() - started
    return result


def _run_ros_stream(session: RosSession, protocol: Protocol, result: RunResult,
                    lesson_bags: dict, test_bags: list[Path], consolidate_every: int,
                    eval_every: int) -> None:
    seen: set[str] = set()
    total = len(protocol.experiences)
    model_version = 0
    for exp in protocol.experiences:
        exp_start = time.perf_counter()
        record = ExperienceRecord(exp.index, [lesson.key for lesson in exp.lessons],
                                  list(exp.new_classes), 0, 0, 0.0)
        resp = _teach_experience(session, exp.lessons, lesson_bags,
                                 protocol.frames_per_experience)
        record.update_seconds += resp.training_seconds
        record.frames_used += resp.frames_used
        model_version = resp.model_version
        seen.update(lesson.label for lesson in exp.lessons)
        record.classes_seen = len(seen)
        if _should_consolidate(exp.index, consolidate_every):
            resp = session.call('consolidate', timeout=3600.0, force=False)
            if resp.success:
                record.consolidation_seconds = resp.seconds
                result.consolidations += 1
                model_version = resp.model_version
            else:
                logger.warning('consolidation after experience %d: %s', exp.index + 1,
                               resp.message)
        record.experience_seconds = time.perf_counter() - exp_start
        if _should_eval(exp.index, total, eval_every):
            record.evaluation = _evaluate_ros(session, protocol, test_bags, seen, model_version)
        result.records.append(record)
        _log_experience(protocol, record)


# --- outputs ----------------------------------------------------------------------------------

def _plain(value):
    """Return ``value`` with NaN/inf as None and numpy scalars as Python numbers (for JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def category_column(category: int, names: Sequence[str] = CATEGORY_NAMES) -> str:
    """Return the CSV column of a category's accuracy, e.g. ``acc_c3_light_bulb``.

    ``names`` gives the category names (a protocol's ``category_names``; default CORe50's).
    """
    return f'acc_c{category}_{names[category]}'


CSV_COLUMNS = ('experience', 'lessons', 'new_classes', 'classes_seen', 'frames_used',
               'update_seconds', 'consolidation_seconds', 'experience_seconds', 'eval_seconds',
               'test_frames', 'answered', 'accuracy', 'accuracy_seen')


def write_csv(path: Path, protocol: Protocol, records: list[ExperienceRecord]) -> None:
    """Write one row per experience (accuracies as fractions; empty when not evaluated)."""
    columns = list(CSV_COLUMNS) + [category_column(c, protocol.category_names)
                                   for c in protocol.categories]

    def fmt(value) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ''
        return f'{value:.6f}' if isinstance(value, float) else str(value)

    with path.open('w', newline='', encoding='utf-8') as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for r in records:
            ev = r.evaluation
            row = [r.index + 1, ' '.join(f's{s}/o{o}' for s, o in r.lessons),
                   ' '.join(r.new_classes), r.classes_seen, r.frames_used, r.update_seconds,
                   r.consolidation_seconds, r.experience_seconds,
                   ev.seconds if ev else None, ev.frames if ev else None,
                   ev.answered if ev else None, ev.accuracy if ev else None,
                   ev.accuracy_seen if ev else None]
            row += [ev.per_category.get(c) if ev else None for c in protocol.categories]
            writer.writerow([fmt(v) for v in row])


def summarize(protocol: Protocol, result: RunResult, args: dict | None = None) -> dict:
    """Return the summary.json content: accuracies, forgetting, BWT, timings, protocol."""
    matrix = AccuracyMatrix(protocol.class_labels)
    evaluated = [r for r in result.records if r.evaluation is not None]
    for r in evaluated:
        matrix.record(r.evaluation.per_class)
    last = evaluated[-1].evaluation if evaluated else None
    updates = [r.update_seconds for r in result.records]
    lesson_updates = [r.update_seconds / max(1, len(r.lessons)) for r in result.records]
    names = protocol.category_names
    published = None
    if not protocol.generated and protocol.scenario is not None:
        published = PUBLISHED.get(protocol.scenario)
    run = protocol.origin.run if protocol.origin is not None else None
    return _plain({
        'mode': result.mode, 'source': protocol.source.name, 'seed': protocol.seed,
        'scenario': protocol.scenario, 'official_run': run, 'structure': protocol.structure,
        'protocol': protocol.summary(),
        'classes': protocol.classes, 'experiences_run': len(result.records),
        'final_accuracy': last.accuracy if last else None,
        'final_accuracy_seen': last.accuracy_seen if last else None,
        'final_accuracy_per_category': (
            {names[c]: v for c, v in last.per_category.items()} if last else None),
        'average_accuracy': (float(np.mean([r.evaluation.accuracy for r in evaluated]))
                             if evaluated else None),
        'final_class_average_accuracy': matrix.average_accuracy() if evaluated else None,
        'forgetting': matrix.forgetting(), 'backward_transfer': matrix.backward_transfer(),
        'accuracy_curve': [[r.index + 1, r.evaluation.accuracy] for r in evaluated],
        'timings': {
            'wall_seconds': result.wall_seconds, 'setup_seconds': result.setup_seconds,
            'update_seconds_total': float(np.sum(updates)) if updates else 0.0,
            'update_seconds_per_lesson_mean': (float(np.mean(lesson_updates))
                                               if lesson_updates else None),
            'update_seconds_per_lesson_max': (float(np.max(lesson_updates))
                                              if lesson_updates else None),
            'consolidations': result.consolidations,
            'consolidation_seconds_total': float(sum(r.consolidation_seconds
                                                     for r in result.records)),
            'encode_seconds_total': float(sum(r.encode_seconds for r in result.records)),
            'experience_seconds_total': float(sum(r.experience_seconds
                                                  for r in result.records)),
            'eval_seconds_total': float(sum(r.evaluation.seconds for r in evaluated)),
        },
        'accuracy_matrix': matrix.state_dict(),
        'published_final_accuracy': published,
        'published_nicv2_391_final_accuracy': (None if protocol.generated
                                               else PUBLISHED_NICV2_391),
        'run': result.extra, 'args': args or {},
    })


def plot(path: Path, protocol: Protocol, records: list[ExperienceRecord], title: str) -> None:
    """Save accuracy vs experience (overall, seen classes, per category) as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    evaluated = [r for r in records if r.evaluation is not None]
    x = [r.index + 1 for r in evaluated]
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    try:
        cmap = plt.get_cmap('tab10')
        for c in protocol.categories:
            ax.plot(x, [100 * r.evaluation.per_category[c] for r in evaluated], lw=1,
                    alpha=0.6, color=cmap(c % 10), label=protocol.category_names[c])
        ax.plot(x, [100 * r.evaluation.accuracy_seen for r in evaluated], 'k--', lw=1.5,
                label='classes seen')
        ax.plot(x, [100 * r.evaluation.accuracy for r in evaluated], 'k-', lw=2.5,
                marker='o' if len(x) < 40 else None, ms=3, label='overall')
        ax.set_xlabel('experience')
        ax.set_ylabel('test accuracy (%)')
        ax.set_ylim(-2, 102)
        ax.set_xlim(0.5, max(x + [1]) + 0.5)
        ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, ncol=2, loc='lower right')
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def write_outputs(out_dir: Path, protocol: Protocol, result: RunResult,
                  args: dict | None = None) -> dict:
    """Write accuracy.csv, summary.json and accuracy.png; return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / CSV_NAME, protocol, result.records)
    summary = summarize(protocol, result, args)
    with (out_dir / SUMMARY_NAME).open('w', encoding='utf-8') as stream:
        json.dump(summary, stream, indent=1)
        stream.write('\n')
    final = summary['final_accuracy']
    title = (f'{protocol.name} ({protocol.classes} classes), {result.mode} mode, seed '
             f'{protocol.seed}: final {final:.1%}' if final is not None else protocol.name)
    plot(out_dir / PLOT_NAME, protocol, result.records, title)
    return summary


# --- command line -----------------------------------------------------------------------------

def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be >= 1, got {value}')
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0, got {value}')
    return value


def _frame_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected WIDTHxHEIGHT, got {text!r}') from None
    if min(width, height) < 32:
        raise argparse.ArgumentTypeError(f'frames must be at least 32x32, got {text!r}')
    return width, height


def _runs(text: str) -> list[int]:
    """Parse ``0-9``, ``0,3,5`` or ``4`` into run numbers."""
    runs: list[int] = []
    try:
        for part in text.split(','):
            first, _, last = part.partition('-')
            runs += list(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected runs like 0-9 or 0,2,5, got {text!r}') \
            from None
    if not runs or min(runs) < 0 or len(set(runs)) != len(runs):
        raise argparse.ArgumentTypeError(f'expected distinct runs >= 0, got {text!r}')
    return runs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog='python -m cl_core_ros.tools.run_protocol',
        description='Run a NICv2-style continual-learning protocol on CORe50 (or a folder in '
                    'its layout), on the hard stream or on photos, and write accuracy.csv, '
                    'summary.json and accuracy.png.')
    parser.add_argument('--source', choices=SOURCES, default='core50',
                        help='core50: a folder in the CORe50 layout (--root); hard: the hard '
                             'stream (photographic objects over photographic backgrounds); '
                             'photos: scikit-image photos filmed in sessions. hard and photos '
                             'are rendered on demand (default core50)')
    parser.add_argument('--root', type=Path, default=None,
                        help='core50_128x128 (or the folder holding it); needed by --source '
                             'core50 only')
    parser.add_argument('--out', required=True, type=Path, help='output folder')
    parser.add_argument('--mode', choices=MODES, default='fast',
                        help='fast: the core learner directly; ros: through the nodes')
    parser.add_argument('--seed', type=int, default=0, help='seed of the protocol (default 0)')
    parser.add_argument('--experiences', type=_positive, default=None, metavar='N',
                        help='run only the first N experiences of the stream')
    parser.add_argument('--frames-per-experience', type=_positive, default=None, metavar='N',
                        help='evenly spaced frames taught per object-session (default all; '
                             f'hard and photos: {DEFAULT_GENERATED_FRAMES} frames rendered)')
    parser.add_argument('--test-frames-per-session', type=_positive, default=None, metavar='N',
                        help='evenly spaced test frames per object in each test session '
                             f'(default: all in fast mode, {DEFAULT_ROS_TEST_FRAMES} in ros '
                             f'mode; hard and photos: {DEFAULT_GENERATED_TEST_FRAMES} in each '
                             'of their 4 test sessions)')
    parser.add_argument('--classes', choices=CLASS_MODES, default='object',
                        help='a class is the object (50-way) or its category (10-way)')
    parser.add_argument('--consolidate-every', type=_non_negative, default=None, metavar='N',
                        help='deep consolidation after every N experiences (default '
                             f'{DEFAULT_CONSOLIDATE_EVERY}: AR1* with latent replay; 0: never)')
    parser.add_argument('--fast-only', action='store_true',
                        help='fast (head) updates only, no deep consolidation: the CWR*-like '
                             'setting')
    parser.add_argument('--filelists', type=Path, default=None, metavar='DIR',
                        help='core50: the official batch filelists (the folder holding '
                             'NIC_v2_391/runN or sIII_v2_391/runN, or one of those): each '
                             "training batch is one experience, tested on the run's test list")
    parser.add_argument('--scenario', choices=sorted(SCENARIOS), default=DEFAULT_SCENARIO,
                        help='core50: NICv2-391 (one object-session per experience after the '
                             'first batch), -196 (two) or -79 (five); default nicv2_391')
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument('--run', type=_non_negative, default=None, metavar='N',
                      help='with --filelists: the run to use (default 0)')
    runs.add_argument('--runs', type=_runs, default=None, metavar='A-B',
                      help='with --filelists: several runs (0-9, 0,2,5), each in '
                           '--out/runN, aggregated as mean +- std in --out/summary.json')
    parser.add_argument('--test-filelist', type=Path, default=None, metavar='FILE',
                        help="with --filelists: the test list (default: the run's "
                             f'{TEST_FILELIST}, else {REDUCED_TEST_FILELIST} above it; the '
                             'published AR1* figures use the reduced one)')
    parser.add_argument('--size', type=int, choices=(128, 350), default=None,
                        help='core50: the layout to use when --root holds both')
    parser.add_argument('--bags', type=Path, default=None, metavar='DIR',
                        help='ros mode: use the bags under DIR instead of converting')
    parser.add_argument('--first-objects', type=_positive, default=None, metavar='N',
                        help=f'core50: objects in the first experience (default '
                             f'{DEFAULT_FIRST_OBJECTS})')
    parser.add_argument('--objects', type=int, nargs='+', default=None, metavar='O',
                        help='core50: use only these objects (default all)')
    parser.add_argument('--test-sessions', type=int, nargs='+', default=None, metavar='S',
                        help='core50: test sessions (default: those of 3 7 10 present)')
    parser.add_argument('--hard-objects', type=_positive, default=None, metavar='N',
                        help='hard and photos: objects taught (the classes; default '
                             f'{DEFAULT_HARD_OBJECTS})')
    parser.add_argument('--rounds', type=_positive, default=None, metavar='N',
                        help='hard and photos: training sessions per object, one round each: '
                             'the first round introduces every object, the later ones bring '
                             f'new sessions of known objects (default {DEFAULT_ROUNDS})')
    parser.add_argument('--frame-size', type=_frame_size, default=None, metavar='WxH',
                        help='hard and photos: size of the rendered frames (default '
                             f'{DEFAULT_FRAME_SIZE[0]}x{DEFAULT_FRAME_SIZE[1]})')
    parser.add_argument('--eval-every', type=_positive, default=1, metavar='N',
                        help='evaluate after every N experiences (and after the last)')
    parser.add_argument('--bag-format', choices=BAG_FORMATS, default='png',
                        help='ros mode: images in converted bags (png keeps the CORe50 bytes)')
    parser.add_argument('--quiet', action='store_true', help='log warnings only')
    args = parser.parse_args(argv)
    if args.bags is not None and args.mode != 'ros':
        parser.error('--bags needs --mode ros')
    if args.fast_only and args.consolidate_every:
        parser.error('--fast-only and --consolidate-every N > 0 contradict each other')
    if args.consolidate_every is None:
        args.consolidate_every = 0 if args.fast_only else DEFAULT_CONSOLIDATE_EVERY
    if args.filelists is None:
        given = [f'--{n.replace("_", "-")}' for n in ('run', 'runs', 'test_filelist')
                 if getattr(args, n) is not None]
        if given:
            parser.error(f'{", ".join(given)}: only with --filelists')
    else:
        given = [f'--{n.replace("_", "-")}' for n in ('first_objects', 'objects',
                                                     'test_sessions')
                 if getattr(args, n) is not None]
        if given:
            parser.error(f'{", ".join(given)}: the filelists fix them; not with --filelists')
        args.runs = args.runs or [0 if args.run is None else args.run]
        if args.bags is not None and len(args.runs) > 1:
            parser.error('--bags: with one run only (each run writes its own bags)')
    only = {'core50': ('root', 'first_objects', 'objects', 'test_sessions', 'filelists',
                       'size'),
            'generated': ('hard_objects', 'rounds', 'frame_size')}
    kind = 'core50' if args.source == 'core50' else 'generated'
    for other, names in only.items():
        given = [f'--{n.replace("_", "-")}' for n in names if getattr(args, n) is not None]
        if other != kind and given:
            wanted = 'core50' if other == 'core50' else 'hard or photos'
            parser.error(f'{", ".join(given)}: for --source {wanted} only, not '
                         f'--source {args.source}')
    if kind == 'core50':
        if args.root is None:
            parser.error('--source core50 needs --root (a folder in the CORe50 layout)')
        if args.first_objects is None and args.filelists is None:
            args.first_objects = DEFAULT_FIRST_OBJECTS
        if args.test_frames_per_session is None and args.mode == 'ros' \
                and args.filelists is None:  # the filelists' test list is used whole
            args.test_frames_per_session = DEFAULT_ROS_TEST_FRAMES
    else:
        defaults = {'hard_objects': DEFAULT_HARD_OBJECTS, 'rounds': DEFAULT_ROUNDS,
                    'frame_size': DEFAULT_FRAME_SIZE,
                    'frames_per_experience': DEFAULT_GENERATED_FRAMES,
                    'test_frames_per_session': DEFAULT_GENERATED_TEST_FRAMES}
        for name, value in defaults.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
    return args


def make_protocol(args: argparse.Namespace, run: int | None = None) -> Protocol:
    """Build the protocol the parsed command line asks for (ProtocolError if it cannot).

    With ``--filelists``, ``run`` is the official run to read (default the first of --runs).
    """
    if args.source == 'core50' and args.filelists is not None:
        run = args.runs[0] if run is None else run
        label_kind = 'category' if args.classes == 'category' else 'object'
        try:
            official = read_official_run(args.filelists, args.scenario, run,
                                         test_filelist=args.test_filelist,
                                         label_kind=label_kind)
        except FilelistError as exc:
            if label_kind == 'object':
                raise ProtocolError(str(exc)) from None
            # no _cat lists: the object-level ones give the same stream
            try:
                official = read_official_run(args.filelists, args.scenario, run,
                                             test_filelist=args.test_filelist)
            except FilelistError:
                raise ProtocolError(str(exc)) from None
        return build_official_protocol(
            official, args.root, classes=args.classes, experiences=args.experiences,
            frames_per_experience=args.frames_per_experience,
            test_frames_per_session=args.test_frames_per_session, size=args.size)
    if args.source == 'core50':
        return build_protocol(
            args.root, seed=args.seed, classes=args.classes, first_objects=args.first_objects,
            experiences=args.experiences, frames_per_experience=args.frames_per_experience,
            test_frames_per_session=args.test_frames_per_session,
            test_sessions=args.test_sessions, objects=args.objects, scenario=args.scenario,
            size=args.size)
    try:
        source = make_source(args.source, args.hard_objects, seed=args.seed,
                             frame_size=tuple(args.frame_size))
    except SourceError as exc:
        raise ProtocolError(str(exc)) from None
    return build_generated_protocol(
        source, seed=args.seed, classes=args.classes, rounds=args.rounds,
        experiences=args.experiences, frames_per_experience=args.frames_per_experience,
        test_frames_per_session=args.test_frames_per_session)


def _run_one(args: argparse.Namespace, out: Path, run: int | None) -> tuple[Protocol, dict,
                                                                          RunResult]:
    """Build, run and write the outputs of one protocol (one official run) into ``out``."""
    protocol = make_protocol(args, run)
    if args.mode == 'fast':
        result = run_fast(protocol, consolidate_every=args.consolidate_every,
                          eval_every=args.eval_every)
    else:
        result = run_ros(protocol, out, bags_dir=args.bags,
                         consolidate_every=args.consolidate_every, eval_every=args.eval_every,
                         bag_format=args.bag_format)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    summary = write_outputs(out, protocol, result, settings)
    print(f'{protocol.name} ({protocol.classes}, {protocol.structure}), {result.mode} mode: '
          f'final accuracy {_pct(summary["final_accuracy"])}, average '
          f'{_pct(summary["average_accuracy"])}, forgetting '
          f'{_pct(summary["forgetting"])}, wall {result.wall_seconds:.1f} s; outputs in {out}')
    return protocol, summary, result


def aggregate_runs(summaries: Sequence[dict]) -> dict:
    """Return the mean and standard deviation over runs (one summary.json each).

    ``final_accuracy`` and ``average_accuracy`` get ``mean``, ``std`` (sample standard
    deviation, ddof 1; 0 for one run) and ``runs``; the accuracy curve is averaged per
    experience over the runs that evaluated it.
    """
    def stats(key: str) -> dict:
        values = [s[key] for s in summaries if s.get(key) is not None]
        return {'mean': float(np.mean(values)) if values else None,
                'std': float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                'runs': len(values), 'values': values}

    curves: dict[int, list[float]] = {}
    for summary in summaries:
        for experience, value in summary['accuracy_curve']:
            curves.setdefault(int(experience), []).append(value)
    return {
        'final_accuracy': stats('final_accuracy'),
        'average_accuracy': stats('average_accuracy'),
        'forgetting': stats('forgetting'),
        'accuracy_curve_mean': [[k, float(np.mean(v)), float(np.std(v))]
                                for k, v in sorted(curves.items())],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the protocol runner; return the exit code (0 ok, 2 bad input, 1 failure)."""
    args = parse_args(argv)
    fix_heap_thresholds()  # as the nodes do: a learner in this process consolidates too
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                            format='[%(levelname)s] %(name)s: %(message)s')
    runs = args.runs if args.filelists is not None else [None]
    summaries = []
    try:
        for run in runs:
            out = args.out if len(runs) == 1 else args.out / f'run{run}'
            protocol, summary, _ = _run_one(args, out, run)
            summaries.append(summary)
    except (ProtocolError, FilelistError, Core50Error, FileNotFoundError) as exc:
        print(f'run_protocol: {exc}', file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError, OSError) as exc:  # OSError: e.g. --out not writable
        print(f'run_protocol: failed: {exc}', file=sys.stderr)
        return 1
    if len(runs) > 1:
        write_aggregate(args.out, protocol, summaries, runs, vars(args))
    return 0


def write_aggregate(out: Path, protocol: Protocol, summaries: Sequence[dict],
                    runs: Sequence[int], args: dict) -> dict:
    """Write --out/summary.json and runs.csv over several runs; return the summary."""
    aggregate = aggregate_runs(summaries)
    summary = _plain({
        'scenario': protocol.scenario, 'name': protocol.name, 'runs': list(runs),
        'mode': summaries[0]['mode'], 'structure': 'official filelists',
        **aggregate,
        'filelists': {f'run{r}': s['protocol']['filelists'] for r, s in zip(runs, summaries)},
        'published_final_accuracy': summaries[0]['published_final_accuracy'],
        'args': {k: str(v) if isinstance(v, Path) else v for k, v in args.items()},
    })
    out.mkdir(parents=True, exist_ok=True)
    with (out / SUMMARY_NAME).open('w', encoding='utf-8') as stream:
        json.dump(summary, stream, indent=1)
        stream.write('\n')
    with (out / AGGREGATE_CSV).open('w', newline='', encoding='utf-8') as stream:
        writer = csv.writer(stream)
        writer.writerow(['run', 'final_accuracy', 'average_accuracy', 'forgetting'])
        for run, s in zip(runs, summaries):
            writer.writerow([run, s['final_accuracy'], s['average_accuracy'], s['forgetting']])
    final = aggregate['final_accuracy']
    print(f'{protocol.name}, runs {runs[0]}-{runs[-1]} ({len(runs)}): final accuracy '
          f'{_pct(final["mean"])} +- {_pct(final["std"])}; outputs in {out}')
    return summary


def _pct(value: float | None) -> str:
    return 'n/a' if value is None else f'{value:.1%}'


if __name__ == '__main__':
    sys.exit(main())
