"""Learner node: AR1* inference on the newest frame, teaching by services, durable state.

Topics: subscribes ``frames`` (sensor_msgs/Image, sensor-data QoS, depth 1); publishes
``predictions`` (cl_core_ros/Prediction), ``~/status`` (cl_core_ros/LearnerStatus, latched),
``~/annotated_image`` (the frame with the top-3 drawn on it) and ``/diagnostics``.
Services: ``~/label_object``, ``~/start_learning``, ``~/list_classes``, ``~/forget_class``,
``~/rename_class``, ``~/consolidate``, ``~/rollback``, ``~/save_state`` and ``~/reset``
(std_srvs/Trigger), ``~/export_classes`` and ``~/import_classes`` (lesson packs; with the
latched ``/lessons`` topic, see :mod:`cl_core_ros.nodes.fleet`).

Concurrency: one inference thread takes the newest frame itself (see FrameInbox: no backlog can
build up), classifies it and encodes frames being gathered; services run in one mutually
exclusive group (concurrent clients are served one at a time), consolidation in its own group so
that predictions and status keep flowing while it runs.
"""

from collections import Counter, deque
import logging
import math
import threading
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, ShutdownException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    qos_profile_sensor_data,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger
import torch

from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.learner import CLASH_POLICIES, Learner
from cl_core_ros.core.state_store import default_state_dir, StateStore
from cl_core_ros.core.teacher import Phase, Teacher
from cl_core_ros.msg import LearnerStatus, Prediction
from cl_core_ros.nodes.callback_guard import CallbackGuard
from cl_core_ros.nodes.fleet import Fleet
from cl_core_ros.nodes.frame_inbox import FrameInbox
from cl_core_ros.nodes.image_conversion import FrameError, image_to_rgb, rgb_to_image
from cl_core_ros.nodes.label_drawing import draw_prediction
from cl_core_ros.nodes.params import declare, on_set, Param, ParameterError
from cl_core_ros.nodes.runtime import set_timer_period, spin_nodes
from cl_core_ros.srv import (
    Consolidate,
    ExportClasses,
    ForgetClass,
    ImportClasses,
    LabelObject,
    ListClasses,
    RenameClass,
    Rollback,
    StartLearning,
)

MODEL = 'it shapes the model, and the stored state is made for it'
MEMORY = 'the replay memories are sized with it and stored with the state'
FLEET = 'the /lessons publisher and subscription are made with it when the node starts'
THREADS = "torch's thread pool of the process is sized with it at start-up"

PARAMS = [
    Param('backbone', 'efficientnet_lite0', 'Feature extractor.',
          choices=('efficientnet_lite0', 'mobilenet_v1'), fixed=MODEL),
    Param('mobilenet_weights', '', 'Weights file (.safetensors or state_dict) for '
          'mobilenet_v1; no registry ships them.', fixed=MODEL),
    Param('input_size', 192, 'Side of the square model input in pixels (the output_size of '
          'the camera node should match).', min=64, max=512, fixed=MODEL),
    Param('centre_sigma', 0.12, 'Centre-weighted pooling of the last feature map (Gaussian '
          'width, fraction of its side); 0 = global average pooling (states stored before '
          'this parameter existed were made with 0).', min=0.0, max=10.0, fixed=MODEL),
    Param('surround_weight', 0.5, 'Share of the border ring of the last feature map '
          'subtracted from the centre-weighted feature (centre-surround pooling); 0 = none '
          '(states stored before this parameter existed were made with 0).', min=0.0, max=4.0,
          fixed=MODEL),
    Param('feature_layer', '', "Last backbone stage before pooling; empty = the backbone's "
          'default (block15, 320-d, for efficientnet_lite0; head_conv gives the 1280-d feature '
          'states stored before this parameter existed were made with).', fixed=MODEL),
    Param('state_dir', '', 'Directory of the durable learner state; empty = '
          '$ROS_HOME/cl_core_ros/state.', fixed='the state store is opened at start-up'),
    Param('state_keep', 5, 'Stored versions to keep (for rollback); older ones are removed at '
          'the next commit.', min=1, max=1000, runtime=True),
    Param('max_classes', 1000, 'Most classes the robot may learn.', min=1, max=100000,
          fixed='the label registry is sized with it'),
    Param('gather.frames', 100, 'Frames gathered per label_object call by default.',
          min=1, max=1000, runtime=True),
    Param('gather.rate', 5.0, 'Frames per second gathered (the CORe app uses 5).',
          min=0.1, max=60.0, runtime=True),
    Param('gather.min_frames', 5, 'Frames needed before start_learning accepts (at most '
          'gather.frames).', min=1, max=1000, runtime=True),
    Param('gather.timeout', 60.0, 'Gathering is cancelled after this many seconds without a '
          'frame.', min=1.0, max=3600.0, runtime=True),
    Param('inference.max_rate', 30.0, 'Most predictions per second.', min=0.1, max=1000.0,
          runtime=True),
    Param('inference.threads', 1, 'CPU threads of the inference thread (one frame at a time '
          'gains little from more and competes with the camera and DDS); 0 = num_threads.',
          min=0, max=256, runtime=True),
    Param('inference.top_k', 3, 'Predictions per message.', min=1, max=20, runtime=True),
    Param('inference.smoothing_window', 6, 'Frames whose scores are averaged (a change '
          'restarts the average).', min=1, max=100, runtime=True),
    Param('inference.unknown_threshold', 0.0, 'Below this smoothed top-1 score the frame is '
          '"unknown" (0 = off).', min=0.0, max=1.0, runtime=True),
    Param('inference.unknown_ratio', 0.53, 'A frame is "unknown" when its smoothed similarity '
          'to the top-1 class is under this share of the similarity that the lesson frames of '
          'that class reach (5th percentile); 0 = off. Used until an object was taught again '
          'in another scene.', min=0.0, max=1.0, runtime=True),
    Param('inference.unknown_quantile', 0.0, 'Once objects were taught again in other scenes: '
          "the floor is this quantile of their frames' smoothed similarity to the class as "
          "taught elsewhere (about this share of a taught object's frames in a new scene is "
          'flagged; 0.02 measured); 0 = use unknown_ratio only.', min=0.0, max=0.5, runtime=True),
    Param('replay.fast_size', 500, 'Pool-level replay patterns (class-balanced).', min=0,
          max=100000, fixed=MEMORY),
    Param('replay.deep_size', 1500, 'Deep-level replay patterns for consolidation.', min=0,
          max=100000, fixed=MEMORY),
    Param('training.fast_epochs', 8, 'Epochs of the fast (head-only) update (from the next '
          'lesson on).', min=1, max=100, runtime=True),
    Param('training.deep_epochs', 4, 'Epochs of the deep consolidation (from the next one '
          'on).', min=1, max=100, runtime=True),
    Param('num_threads', 0, 'CPU threads for torch; 0 = torch default.', min=0, max=256,
          fixed=THREADS),
    Param('consolidation_threads', 1, 'CPU threads for the deep consolidation (fewer than the '
          'cores, so that inference keeps running meanwhile); 0 = num_threads.', min=0,
          max=256, runtime=True),
    Param('annotated_image', True, 'Publish ~/annotated_image.', runtime=True),
    Param('diagnostics_period', 1.0, 'Seconds between /diagnostics messages.', min=0.1,
          max=3600.0, runtime=True),
    Param('max_pixels', 40_000_000, 'Larger frames are dropped.', min=1, max=400_000_000,
          runtime=True),
    Param('fleet.share', False, 'Publish a lesson pack of every lesson taught here, once '
          'stored, on the latched /lessons topic.', fixed=FLEET),
    Param('fleet.accept', [], 'Learners whose packs on /lessons are imported: fully '
          'qualified names (/robot_a/learner), namespaces (/robot_a) or *; empty = none.',
          fixed=FLEET),
    Param('fleet.on_clash', 'merge', 'What a class received on /lessons does when its label '
          'is already a class here.', choices=CLASH_POLICIES, fixed=FLEET),
    Param('fleet.history', 20, 'Packs kept on /lessons for learners that start later.',
          min=1, max=1000, fixed=FLEET),
]

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


# Node parameters that the core learner applies itself (Learner.tune), by LearnerConfig field.
TUNED_IN_CORE = {
    'inference.top_k': 'top_k', 'inference.smoothing_window': 'smoothing_window',
    'inference.unknown_threshold': 'unknown_threshold',
    'inference.unknown_ratio': 'unknown_ratio',
    'inference.unknown_quantile': 'unknown_quantile', 'training.fast_epochs': 'fast_epochs',
    'training.deep_epochs': 'deep_epochs',
}


def cross_check(p: dict) -> None:
    """Raise ParameterError for values that do not work together."""
    if p['gather.min_frames'] > p['gather.frames']:
        raise ParameterError(
            f"parameter 'gather.min_frames' = {p['gather.min_frames']} is more than "
            f"'gather.frames' = {p['gather.frames']}: a default lesson could never be learned")


def config_from_params(p: dict) -> LearnerConfig:
    """Map node parameters onto the core's LearnerConfig (validated there)."""
    cfg = LearnerConfig(
        backbone=p['backbone'], input_size=p['input_size'], centre_sigma=p['centre_sigma'],
        surround_weight=p['surround_weight'], feature_layer=p['feature_layer'] or None,
        mobilenet_weights=p['mobilenet_weights'] or None, max_classes=p['max_classes'],
        top_k=p['inference.top_k'], smoothing_window=p['inference.smoothing_window'],
        unknown_threshold=p['inference.unknown_threshold'],
        unknown_ratio=p['inference.unknown_ratio'],
        unknown_quantile=p['inference.unknown_quantile'],
        fast_buffer_size=p['replay.fast_size'], deep_buffer_size=p['replay.deep_size'],
        fast_epochs=p['training.fast_epochs'], deep_epochs=p['training.deep_epochs'],
        num_threads=p['num_threads'] or None)
    try:
        cfg.validate()
    except ValueError as exc:
        raise ParameterError(str(exc)) from exc
    return cfg


class LearnerNode(Node):
    """Holds the AR1* learner; recognises frames and learns objects on request."""

    def __init__(self, **kwargs):
        super().__init__('learner', **kwargs)
        p = declare(self, PARAMS)
        cross_check(p)
        self._p = p
        _route_core_logs(self)
        state_dir = p['state_dir'] or str(default_state_dir())
        self.learner = Learner(config_from_params(p))
        store = StateStore(state_dir, keep=p['state_keep'],
                           model_signature=self.learner.signature(),
                           signature_defaults=self.learner.signature_defaults())
        self.teacher = Teacher(self.learner, store, gather_rate=p['gather.rate'],
                               default_frames=p['gather.frames'],
                               min_frames=p['gather.min_frames'],
                               consolidation_threads=p['consolidation_threads'])
        for problem in self.teacher.load_problems:
            self.get_logger().warning(f'state: {problem}')
        self._latest = None  # (rgb, header, monotonic receive time); inference thread only
        self._running = True
        self._stopping = threading.Event()  # set when the process stops: ends any wait
        self._inference_threads = None  # applied by the inference thread (a per-thread setting)
        self._min_period = 1.0 / p['inference.max_rate']
        self._latencies: deque[float] = deque(maxlen=200)
        self._pred_times: deque[float] = deque(maxlen=200)
        self._in_times: deque[float] = deque(maxlen=200)
        self.dropped = 0
        self.dropped_reasons: Counter[str] = Counter()
        self.guard = CallbackGuard(self.get_logger())
        self._last_status = None

        services = MutuallyExclusiveCallbackGroup()
        consolidation = MutuallyExclusiveCallbackGroup()
        timers = MutuallyExclusiveCallbackGroup()
        self._pred_pub = self.create_publisher(Prediction, 'predictions', RELIABLE)
        self._status_pub = self.create_publisher(LearnerStatus, '~/status', LATCHED)
        self._annotated_pub = self.create_publisher(Image, '~/annotated_image',
                                                    qos_profile_sensor_data)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        guard = self.guard

        def srv(srv_type, name, callback, group=services):
            self.create_service(srv_type, name, guard.service(name.lstrip('~/'), callback),
                                callback_group=group)
        srv(LabelObject, '~/label_object', self._label_object)
        srv(StartLearning, '~/start_learning', self._start_learning)
        srv(ListClasses, '~/list_classes', self._list_classes)
        srv(ForgetClass, '~/forget_class', self._forget_class)
        srv(RenameClass, '~/rename_class', self._rename_class)
        srv(Rollback, '~/rollback', self._rollback)
        srv(Trigger, '~/save_state', self._save_state)
        srv(Trigger, '~/reset', self._reset)
        srv(Consolidate, '~/consolidate', self._consolidate, consolidation)
        self.fleet = Fleet(self, self.teacher, share=p['fleet.share'], accept=p['fleet.accept'],
                           on_clash=p['fleet.on_clash'], history=p['fleet.history'],
                           callback_group=services,
                           on_change=lambda: self._publish_status(force=True))
        srv(ExportClasses, '~/export_classes', self._export_classes)
        srv(ImportClasses, '~/import_classes', self._import_classes)
        # Steady clock: with use_sim_time, status and diagnostics go on when /clock stops or
        # jumps back (the consolidation node relies on "consolidating" coming within 0.2 s).
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(0.2, guard.timer('status', self._publish_status),
                          callback_group=timers, clock=steady)
        self._diag_timer = self.create_timer(
            p['diagnostics_period'], guard.timer('diagnostics', self._publish_diagnostics),
            callback_group=timers, clock=steady)
        self._inbox = FrameInbox(self, 'frames', guard.subscription('frames', self._on_frame))
        self._worker = threading.Thread(target=self._inference_loop, name='inference',
                                        daemon=True)
        self._worker.start()
        on_set(self, PARAMS, p, apply=self._apply_params, cross_check=cross_check)
        self.get_logger().info(
            f'learner: {p["backbone"]} {p["input_size"]}px, {len(self.learner.labels)} '
            f'classes, state {state_dir} (version {self.teacher.status().state_version})')

    def _apply_params(self, changes: dict) -> None:
        """Put validated parameter changes into effect (see PARAMS: the runtime ones)."""
        core = {TUNED_IN_CORE[k]: v for k, v in changes.items() if k in TUNED_IN_CORE}
        if core:
            self.learner.tune(**core)
        teacher = self.teacher
        for name, attribute in (('gather.frames', 'default_frames'),
                                ('gather.rate', 'gather_rate'),
                                ('gather.min_frames', 'min_frames'),
                                ('consolidation_threads', 'consolidation_threads')):
            if name in changes:
                setattr(teacher, attribute, changes[name])
        if 'state_keep' in changes:
            teacher.store.keep = changes['state_keep']
        if 'inference.max_rate' in changes:
            self._min_period = 1.0 / changes['inference.max_rate']
        if 'diagnostics_period' in changes:
            set_timer_period(self._diag_timer, changes['diagnostics_period'])
        # gather.timeout, max_pixels, inference.threads and annotated_image are read from
        # self._p (updated by on_set) where they are used.

    # ----- frames and inference ------------------------------------------------------------
    def _on_frame(self, msg: Image) -> None:
        """Convert the newest frame (called by the inference thread, see FrameInbox)."""
        now = time.monotonic()
        self._in_times.append(now)
        try:
            rgb = image_to_rgb(msg, max_pixels=self._p['max_pixels'])
        except FrameError as exc:
            self.dropped += 1
            self.dropped_reasons[exc.reason] += 1
            self.get_logger().warning(f'dropped frame: {exc}', throttle_duration_sec=5.0)
            return
        self._latest = (rgb, msg.header, now)

    def _set_inference_threads(self) -> None:
        """Apply ``inference.threads`` to this thread (torch's setting is per thread)."""
        wanted = self._p['inference.threads']
        if wanted != self._inference_threads:
            if self._inference_threads is None:
                self._default_threads = torch.get_num_threads()
            torch.set_num_threads(wanted or self._default_threads)
            self._inference_threads = wanted

    def _inference_loop(self) -> None:
        self._set_inference_threads()
        last = 0.0
        try:
            while self._running:
                self._set_inference_threads()
                wait = self._min_period - (time.monotonic() - last)
                if wait > 0 and not self.teacher.wants_frame():
                    # Before taking a frame, so that it is the newest; shutdown wakes it.
                    self._stopping.wait(wait)
                try:
                    self._inbox.wait(timeout=0.5)
                    item, self._latest = self._latest, None
                    if item is None:
                        self._check_gathering()
                        continue
                    last = time.monotonic()
                    self._process(*item)
                except (ExternalShutdownException, ShutdownException):
                    raise
                except Exception as exc:  # noqa: BLE001 - the node must survive any frame
                    self.guard.record('inference', exc)
        except (ExternalShutdownException, ShutdownException):
            pass  # rclpy is shutting down (Ctrl-C): nothing more to take
        finally:
            self._inbox.close()

    def _process(self, rgb, header, received: float) -> None:
        start = time.monotonic()
        pred, gathered = self.teacher.observe(rgb)
        done = time.monotonic()
        self._latencies.append(done - received)
        self._pred_times.append(done)
        self._pred_pub.publish(Prediction(
            header=header, labels=list(pred.labels), class_ids=[int(c) for c in pred.class_ids],
            scores=[float(s) for s in pred.scores], unknown=bool(pred.unknown),
            model_version=int(pred.model_version), inference_seconds=float(done - start)))
        if (self._p['annotated_image']
                and self._annotated_pub.get_subscription_count() > 0):  # drawing is not free
            self._annotated_pub.publish(rgb_to_image(_annotate(rgb, pred), header))
        if gathered:
            self._publish_status(force=True)

    def _check_gathering(self) -> None:
        if self.teacher.gathering_stalled(self._p['gather.timeout']):
            self.teacher.cancel_gathering(f'no frame for {self._p["gather.timeout"]:.0f} s')
            self._publish_status(force=True)

    # ----- services ---------------------------------------------------------------------------
    def _label_object(self, req, resp):
        out = self.teacher.label(req.label, int(req.num_frames), bool(req.add_to_batch))
        resp.success, resp.message = out.success, out.message
        resp.class_id = int(out.details.get('class_id', -1))
        resp.is_new_class = bool(out.details.get('is_new_class', False))
        self._log(out)
        return resp

    def _start_learning(self, req, resp):
        self._publish_status(force=True)
        out = self.teacher.start_learning()
        d = out.details
        resp.label = d.get('label', '')
        resp.frames_used = int(d.get('frames_used', 0))
        resp.training_seconds = float(d.get('training_seconds', 0.0))
        if out.success:
            self.fleet.lesson_acknowledged(resp.label)
        return self._fill_change(out, resp)

    def _list_classes(self, req, resp):
        rows = self.learner.class_table()
        resp.class_ids = [int(r[0]) for r in rows]
        resp.labels = [r[1] for r in rows]
        resp.pattern_counts = [int(r[2]) for r in rows]
        resp.model_version = int(self.learner.model_version)
        origins = self.learner.class_origins()
        resp.origins = [','.join(o or 'local' for o in origins.get(int(r[0]), ['']))
                        for r in rows]
        return resp

    def _export_classes(self, req, resp):
        labels = list(req.labels)
        out = self.fleet.export(labels, req.path) if req.path else self.fleet.publish(labels)
        resp.success, resp.message = out.success, out.message
        resp.path = out.details.get('path', '')
        resp.pack_sha256 = out.details.get('pack_sha256', '')
        resp.labels = list(out.details.get('labels', []))
        resp.size_bytes = int(out.details.get('size_bytes', 0))
        self._log(out)
        return resp

    def _import_classes(self, req, resp):
        out = self.fleet.import_path(req.path, req.on_clash)
        report = out.details.get('report')
        if report is not None:
            resp.labels = [label for _, label, _, _ in report.imported]
            resp.actions = [action for _, _, _, action in report.imported]
            resp.skipped = [f'{name}: {why}' for name, why in report.skipped]
        return self._fill_change(out, resp)

    def _fill_change(self, out, resp):
        """Fill success, message and versions of a response that may change the model; log."""
        resp.success, resp.message = out.success, out.message
        resp.model_version = int(out.details.get('model_version', self.learner.model_version))
        resp.state_version = int(out.details.get('state_version',
                                                 self.teacher.status().state_version))
        self._log(out)
        return resp

    def _forget_class(self, req, resp):
        return self._fill_change(self.teacher.forget(req.label), resp)

    def _rename_class(self, req, resp):
        return self._fill_change(self.teacher.rename(req.label, req.new_label), resp)

    def _rollback(self, req, resp):
        return self._fill_change(self.teacher.rollback(int(req.version)), resp)

    def _save_state(self, req, resp):
        out = self.teacher.save()
        resp.success = out.success
        resp.message = (f'stored as version {self.teacher.status().state_version}'
                        if out.success else out.message)
        return resp

    def _reset(self, req, resp):
        out = self.teacher.reset()
        resp.success, resp.message = out.success, out.message
        self._log(out)
        return resp

    def _consolidate(self, req, resp):
        self._publish_status(force=True)
        out = self.teacher.consolidate(force=bool(req.force))
        d = out.details
        resp.experiences = int(d.get('experiences', 0))
        resp.seconds = float(d.get('seconds', 0.0))
        return self._fill_change(out, resp)

    def _log(self, out) -> None:
        self._publish_status(force=True)
        if out.success:
            self.get_logger().info(out.message)
        else:
            self.get_logger().warning(out.message)

    # ----- status and diagnostics ------------------------------------------------------------
    def _publish_status(self, force: bool = False) -> None:
        s = self.teacher.status()
        key = (s.phase, s.gathering_label, s.frames_gathered, s.num_classes, s.model_version,
               s.pending_experiences, s.state_version, s.replay_fill)
        if not force and key == self._last_status:
            return
        self._last_status = key
        self._status_pub.publish(LearnerStatus(
            stamp=self.get_clock().now().to_msg(), state=int(s.phase),
            state_name=s.phase.name.lower(), gathering_label=s.gathering_label,
            frames_gathered=s.frames_gathered, frames_target=s.frames_target,
            num_classes=s.num_classes, model_version=s.model_version,
            replay_fill=s.replay_fill, replay_capacity=s.replay_capacity,
            pending_experiences=s.pending_experiences,
            last_training_seconds=float(s.last_training_seconds),
            last_consolidation_seconds=float(s.last_consolidation_seconds),
            state_version=s.state_version))

    def _publish_diagnostics(self) -> None:
        s = self.teacher.status()
        lat = sorted(self._latencies)
        p50 = lat[len(lat) // 2] * 1000 if lat else math.nan
        since = (max(time.time() - s.last_consolidation_time, 0.0)
                 if s.last_consolidation_time else math.nan)
        values = {
            'input_rate_hz': _rate(self._in_times), 'inference_rate_hz': _rate(self._pred_times),
            'latency_p50_ms': p50, 'replay_fill': s.replay_fill,
            'replay_capacity': s.replay_capacity, 'classes': s.num_classes,
            'model_version': s.model_version, 'state_version': s.state_version,
            'pending_experiences': s.pending_experiences, 'dropped_frames': self.dropped,
            'seconds_since_consolidation': since, 'state': s.phase.name.lower(),
            **{f'dropped.{k}': v for k, v in sorted(self.dropped_reasons.items())},
            **self.guard.diagnostic_values(),
            'fleet.received': self.fleet.received, 'fleet.refused': self.fleet.refused,
            'fleet.waiting': self.fleet.waiting,
        }
        storage = self.teacher.store.filesystem_report()
        values['state_filesystem'] = storage.mount or storage.fs_type
        values['state_guarantee'] = storage.guarantee
        if storage.weaker:
            values['state_weaker'] = '; '.join(storage.weaker)
        level = DiagnosticStatus.OK
        message = s.phase.name.lower()
        if self.teacher.load_problems or storage.weaker or values['callback_errors']:
            level = DiagnosticStatus.WARN
            if storage.weaker:
                message += f' (state on {storage.fs_type}: weaker durability guarantee)'
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [DiagnosticStatus(
            level=level, name=f'{self.get_fully_qualified_name()}: learner',
            message=message, hardware_id='cl_core_ros',
            values=[KeyValue(key=k, value=_fmt(v)) for k, v in values.items()])]
        self._diag_pub.publish(msg)

    def begin_shutdown(self) -> None:
        """Stop a running consolidation and the inference loop (the process is stopping)."""
        self.teacher.shut_down()
        self._running = False
        self._stopping.set()

    def close(self) -> None:
        """Stop the inference and fleet threads and the frame subscription (before rclpy)."""
        self.begin_shutdown()
        self._worker.join(timeout=5.0)
        self.fleet.close()


def _rate(times: deque) -> float:
    recent = [t for t in list(times) if t > time.monotonic() - 5.0]
    if len(recent) < 2:
        return 0.0
    return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)


def _fmt(value) -> str:
    return f'{value:.2f}' if isinstance(value, float) else str(value)


def _annotate(rgb, pred):
    """Draw the top-k labels and scores on a copy of the frame (scaled up for readability).

    Any valid label is drawn readably (see label_drawing: TrueType fonts, code points and the
    class id where no font covers a character).
    """
    scale = max(1, 384 // max(rgb.shape[:2]))
    img = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return draw_prediction(img, pred.labels, pred.class_ids, pred.scores, bool(pred.unknown))


class _ToNodeLogger(logging.Handler):
    """Forwards ``logging`` records of the core to a node's logger."""

    def __init__(self, node: Node):
        super().__init__()
        self.node = node

    def emit(self, record: logging.LogRecord) -> None:
        logger = self.node.get_logger()
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            logger.error(text)
        elif record.levelno >= logging.WARNING:
            logger.warning(text)
        else:
            logger.info(text)


def _route_core_logs(node: Node) -> None:
    """Send the core's log records (state loads, commits, updates) to the node logger."""
    core = logging.getLogger('cl_core_ros.core')
    core.setLevel(logging.INFO)
    for handler in [h for h in core.handlers if isinstance(h, _ToNodeLogger)]:
        core.removeHandler(handler)
    core.addHandler(_ToNodeLogger(node))


def main(args=None) -> int:
    """Run the learner node."""
    # Two threads: a long consolidation holds one; frames, timers and services share the other
    # (every extra rclpy executor thread costs CPU in wake-ups).
    return spin_nodes(lambda: [LearnerNode()], args, num_threads=2)


__all__ = ['LearnerNode', 'main', 'Phase']
