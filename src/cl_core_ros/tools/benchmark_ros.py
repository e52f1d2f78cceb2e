"""Benchmark: frames in -> predictions out through the real nodes over DDS.

A 30 fps 640x480 camera stream (real photos) goes to the camera node; the learner's
predictions come back. Measured in four phases: idle, gathering (label_object), learning
(start_learning) and consolidating (a deep consolidation after a few lessons): prediction rate
and latency p50/p99, from the frame's stamp (taken when the camera stream publishes it) to the
prediction's arrival in the receiving DDS participant. The camera node's output is measured the
same way, so the table splits the latency into the camera stage and the rest. A last idle
phase repeats the first one with the lessons learned. CPU use of each process (percent of one
core) is reported for the idle and consolidating phases.

The stream runs in its own process like a camera driver, and the receiver spins a
single-threaded executor, so neither adds its Python overhead to the nodes' measurements.
Targets: >= 25 Hz and p50 <= 50 ms idle, >= 15 Hz during consolidation. Prints a table; writes
CSV and JSON under ``--out`` (``predictions.csv`` and ``frames.csv`` hold every sample).
All traffic stays on loopback (own domain id, Fast DDS profile bound to 127.0.0.1).
"""

import argparse
import copy
import csv
import json
import os
from pathlib import Path
import shutil
import sys
import threading
import time

import numpy as np

OBJECTS = ('chelsea', 'coffee', 'rocket', 'motorcycle')


def parse_args(argv):
    """Parse options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='out/benchmark_ros', help='Output directory.')
    p.add_argument('--fps', type=float, default=30.0, help='Camera rate.')
    p.add_argument('--seconds', type=float, default=10.0, help='Length of a measured phase.')
    p.add_argument('--warmup', type=float, default=5.0,
                   help='Seconds of predictions before the first measured phase.')
    p.add_argument('--lessons', type=int, default=3, help='Lessons before consolidating.')
    p.add_argument('--gather-frames', type=int, default=100, help='Frames per lesson.')
    p.add_argument('--learner-param', action='append', default=[], metavar='NAME:=VALUE',
                   help='A learner parameter, e.g. inference.max_rate:=60.0 (repeatable).')
    p.add_argument('--jpeg', action='store_true',
                   help='Stream JPEG sensor_msgs/CompressedImage on image_raw/compressed '
                        '(quality 90) instead of raw rgb8.')
    p.add_argument('--reliability', choices=('best_effort', 'reliable'), default='best_effort',
                   help="QoS reliability of the stream and of the camera node's image "
                   'subscriptions (qos.reliability); best_effort is what camera drivers send '
                   'with sensor-data QoS.')
    p.add_argument('--stream', action='store_true', help=argparse.SUPPRESS)  # the sender
    return p.parse_args(argv)


def run_stream(fps: float, counter_path: Path, jpeg: bool = False,
               reliability: str = 'best_effort') -> int:
    """Publish 640x480 frames of a photo object at ``fps``, stamped now.

    Raw rgb8 on ``image_raw``, or with ``jpeg`` JPEG on ``image_raw/compressed``.

    The object shown is switched through the latched std_msgs/String topic ``bench_object``; the
    number of frames sent is written to ``counter_path`` once a second.
    """
    import cv2
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import qos_profile_sensor_data, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String

    from cl_core_ros.data.photos import render_frames
    qos = copy.copy(qos_profile_sensor_data)
    if reliability == 'reliable':
        qos.reliability = ReliabilityPolicy.RELIABLE
    from cl_core_ros.nodes.learner_node import LATCHED
    rclpy.init()
    node = rclpy.create_node('benchmark_stream')
    objects = {}
    for name in OBJECTS:
        frames = render_frames(name, 1, 30, size=480)
        canvas = np.full((len(frames), 480, 640, 3), 70, np.uint8)
        canvas[:, :, 80:560] = frames
        objects[name] = [cv2.imencode('.jpg', f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
                         .tobytes() if jpeg else f.tobytes() for f in canvas]
    shown = {'name': OBJECTS[0]}
    node.create_subscription(String, 'bench_object',
                             lambda msg: shown.update(name=msg.data), LATCHED)
    pub = node.create_publisher(CompressedImage if jpeg else Image,
                                'image_raw/compressed' if jpeg else 'image_raw', qos)
    threading.Thread(target=rclpy.spin, args=(node,), daemon=True).start()
    period, sent, start = 1.0 / fps, 0, time.monotonic()
    next_t, next_report = start, start
    try:
        while rclpy.ok():
            data = objects[shown['name']][sent % 30]
            msg = CompressedImage(format='rgb8; jpeg compressed bgr8', data=data) if jpeg \
                else Image(height=480, width=640, encoding='rgb8', step=1920, data=data)
            msg.header.stamp = node.get_clock().now().to_msg()
            msg.header.frame_id = 'bench_camera'
            pub.publish(msg)
            sent += 1
            now = time.monotonic()
            if now >= next_report:
                tmp = counter_path.with_suffix('.tmp')
                tmp.write_text(json.dumps({'sent': sent, 'seconds': now - start}))
                tmp.replace(counter_path)
                next_report += 1.0
            next_t = max(next_t + period, now - period)  # no bursts after a stall
            time.sleep(max(0.0, next_t - time.monotonic()))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


class Recorder:
    """Arrival time and latency of every prediction and camera frame."""

    def __init__(self, node):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from cl_core_ros.msg import Prediction
        self.predictions: list[tuple[float, float, float]] = []  # arrival, latency, inference
        self.frames: list[tuple[float, float]] = []  # arrival, latency
        from rclpy.subscription import Subscription
        if hasattr(Subscription, 'CallbackType'):  # this rclpy can pass MessageInfo
            on_prediction, on_frame = self._on_prediction, self._on_frame
        else:  # older rclpy: the arrival is taken when the callback runs
            on_prediction = lambda msg: self._on_prediction(msg, None)  # noqa: E731
            on_frame = lambda msg: self._on_frame(msg, None)  # noqa: E731
        node.create_subscription(Prediction, 'predictions', on_prediction, 100)
        node.create_subscription(Image, 'frames', on_frame, qos_profile_sensor_data)

    @staticmethod
    def _latency(msg, info) -> float:
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        received = (info or {}).get('received_timestamp') or time.time_ns()  # rmw receipt
        return (received - stamp) / 1e9

    def _on_prediction(self, msg, info) -> None:
        self.predictions.append((time.monotonic(), self._latency(msg, info),
                                 msg.inference_seconds))

    def _on_frame(self, msg, info) -> None:
        self.frames.append((time.monotonic(), self._latency(msg, info)))

    def summary(self, phase: str, t0: float, t1: float) -> dict:
        """Rates and latency percentiles of the samples that arrived in [t0, t1]."""
        return self.summary_of(phase, [(t0, t1)])

    def summary_of(self, phase: str, windows: list[tuple[float, float]]) -> dict:
        """Rates and latency percentiles of the samples that arrived in any of ``windows``."""
        def inside(t):
            return any(a <= t <= b for a, b in windows)
        preds = [x for x in self.predictions if inside(x[0])]
        lat = np.array([x[1] for x in preds]) * 1000
        inf = np.array([x[2] for x in preds]) * 1000
        cam = np.array([x[1] for x in self.frames if inside(x[0])]) * 1000
        seconds = max(sum(b - a for a, b in windows), 1e-9)

        def pct(values, q):
            return round(float(np.percentile(values, q)), 1) if len(values) else None
        return {'phase': phase, 'seconds': round(seconds, 2), 'predictions': len(lat),
                'rate_hz': round(len(lat) / seconds, 1), 'latency_p50_ms': pct(lat, 50),
                'latency_p99_ms': pct(lat, 99), 'inference_p50_ms': pct(inf, 50),
                'camera_hz': round(len(cam) / seconds, 1), 'camera_p50_ms': pct(cam, 50)}

    def write(self, out: Path, start: float) -> None:
        """Write every sample as CSV (seconds since ``start``)."""
        with open(out / 'predictions.csv', 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['arrival_s', 'latency_ms', 'inference_ms'])
            for t, lat, inf in self.predictions:
                writer.writerow([round(t - start, 4), round(lat * 1000, 2),
                                 round(inf * 1000, 2)])
        with open(out / 'frames.csv', 'w', newline='') as f:
            writer = csv.writer(f)
            writer.writerow(['arrival_s', 'latency_ms'])
            for t, lat in self.frames:
                writer.writerow([round(t - start, 4), round(lat * 1000, 2)])


def _cpu_seconds(pid: int) -> float | None:
    """Return the user + system CPU seconds of process ``pid`` so far (Linux), else None."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, ValueError, IndexError):
        return None


def _sent(path: Path) -> tuple[int, float]:
    try:
        data = json.loads(path.read_text())
        return data['sent'], data['seconds']
    except (OSError, ValueError, KeyError):
        return 0, 0.0


def main(argv=None) -> int:  # noqa: C901 - one linear measurement script
    """Run the benchmark."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out).resolve()
    if args.stream:
        return run_stream(args.fps, out / 'sent.json', args.jpeg, args.reliability)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    from cl_core_ros.loopback import apply_loopback_env
    env = apply_loopback_env(out / 'ros_log')
    from cl_core_ros.tools.node_process import NodeProcess
    learner_args = ['-p', f'state_dir:={out / "state"}']
    for value in args.learner_param:
        learner_args += ['-p', value]
    procs = [NodeProcess.executable('camera_node', env, out,
                                    ['-p', 'max_rate:=30.0',
                                     '-p', f'qos.reliability:={args.reliability}']),
             NodeProcess.executable('learner_node', env, out, learner_args),
             NodeProcess([sys.executable, '-m', 'cl_core_ros.tools.benchmark_ros', '--stream',
                          '--fps', str(args.fps), '--out', str(out),
                          '--reliability', args.reliability,
                          *(['--jpeg'] if args.jpeg else [])], env,
                         out / 'stream.log')]
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from std_msgs.msg import String

    from cl_core_ros.msg import LearnerStatus
    from cl_core_ros.nodes.learner_node import LATCHED
    from cl_core_ros.srv import Consolidate, LabelObject, StartLearning
    from cl_core_ros.tools.ros_calls import call_service, wait_until
    rclpy.init(args=[])  # NAME:=VALUE of --learner-param are the learner's, not remap rules here
    node = Node('benchmark_ros')
    rec = Recorder(node)
    status: list = []
    node.create_subscription(LearnerStatus, 'learner/status', status.append, LATCHED)
    show = node.create_publisher(String, 'bench_object', LATCHED)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()

    def call(srv_type, name, request, timeout=600.0):
        return call_service(node, srv_type, name, request, timeout, alive=procs[1].alive)

    watched = {'camera': procs[0].pid, 'learner': procs[1].pid, 'stream': procs[2].pid}

    def cpu_now():
        return time.monotonic(), {name: _cpu_seconds(pid) for name, pid in watched.items()}

    def add_cpu(row, before):
        t0, cpu0 = before
        t1, cpu1 = cpu_now()
        for name in watched:  # percent of one core
            if cpu0[name] is not None and cpu1[name] is not None:
                row[f'{name}_cpu_pct'] = round(100 * (cpu1[name] - cpu0[name]) / (t1 - t0))
        return row

    def idle(phase):
        before, (sent0, s0) = cpu_now(), _sent(out / 'sent.json')
        time.sleep(args.seconds)
        row = add_cpu(rec.summary(phase, before[0], time.monotonic()), before)
        sent1, s1 = _sent(out / 'sent.json')
        row['sent_hz'] = round((sent1 - sent0) / max(s1 - s0, 1e-9), 1)
        return row

    rows = []
    start = time.monotonic()
    try:
        wait_until(lambda: len(rec.predictions) > 30, 180, 'predictions')
        time.sleep(args.warmup)
        rows.append(idle('idle'))
        learn_windows = []
        for i in range(args.lessons):
            name = OBJECTS[i % len(OBJECTS)]
            show.publish(String(data=name))
            call(LabelObject, 'learner/label_object',
                 LabelObject.Request(label=name, num_frames=args.gather_frames))
            t0 = time.monotonic()
            wait_until(lambda: status and status[-1].frames_gathered >= args.gather_frames, 300,
                       'gathering')
            if i == 0:
                rows.append(rec.summary('gathering', t0, time.monotonic()))
            t0 = time.monotonic()
            resp = call(StartLearning, 'learner/start_learning', StartLearning.Request())
            learn_windows.append((t0, time.monotonic() + 0.5, resp.training_seconds))
        rows.append(rec.summary_of('learning', [(a, b) for a, b, _ in learn_windows]))
        rows[-1]['training_seconds_median'] = round(float(np.median(
            [s for _, _, s in learn_windows])), 3)
        before = cpu_now()
        resp = call(Consolidate, 'learner/consolidate', Consolidate.Request(force=True))
        rows.append(add_cpu(rec.summary('consolidating', before[0], time.monotonic()), before))
        rows[-1]['consolidation_seconds'] = round(resp.seconds, 1)
        rows.append(idle('idle after'))
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        for p in procs:
            p.stop()
    rec.write(out, start)
    report(rows, out, args.fps, 'jpeg 640x480' if args.jpeg else '640x480 rgb8',
           args.reliability)
    return 0


def report(rows: list[dict], out: Path, fps: float, frame: str,
           reliability: str = 'best_effort') -> None:
    """Write the CSV and JSON summaries and print the table."""
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != 'phase', k))
    with open(out / 'benchmark_ros.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    result = {'fps': fps, 'frame': frame, 'reliability': reliability, 'phases': rows,
              'targets': {'idle_rate_hz': 25, 'idle_p50_ms': 50, 'consolidating_rate_hz': 15}}
    (out / 'benchmark_ros.json').write_text(json.dumps(result, indent=2))
    columns = (('rate Hz', 'rate_hz'), ('p50 ms', 'latency_p50_ms'),
               ('p99 ms', 'latency_p99_ms'), ('infer ms', 'inference_p50_ms'),
               ('cam Hz', 'camera_hz'), ('cam ms', 'camera_p50_ms'))
    print(f'{"phase":>14}' + ''.join(f'{title:>10}' for title, _ in columns) + '  other')
    for r in rows:
        other = {k: v for k, v in r.items()
                 if k not in {key for _, key in columns} | {'phase', 'seconds', 'predictions'}}
        print(f'{r["phase"]:>14}' + ''.join(f'{r.get(key)!s:>10}' for _, key in columns)
              + f'  {other}')
    print('latency: frame stamp (stream publish) to arrival; cam: the camera node output. '
          'Targets: idle >= 25 Hz and p50 <= 50 ms; >= 15 Hz while consolidating. '
          f'Outputs: {out}')


if __name__ == '__main__':
    sys.exit(main())
