"""Benchmark: frames in -> predictions out through the real nodes over DDS.

A 30 fps 640x480 camera stream (real photos) goes to the camera node; the learner's
predictions come back. Measured in four phases: idle, gathering (label_object), learning
(start_learning) and consolidating (a deep consolidation after a few lessons): prediction rate
and latency (frame stamp to prediction arrival) p50/p99. Targets: >= 25 Hz and p50 <= 50 ms
idle, >= 15 Hz during consolidation. Prints a table; writes CSV and JSON under ``--out``.
All traffic stays on loopback (own domain id, Fast DDS profile bound to 127.0.0.1).
"""

import argparse
import csv
import json
from pathlib import Path
import shutil
import sys
import threading
import time

import numpy as np


def parse_args(argv):
    """Parse options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='out/benchmark_ros', help='Output directory.')
    p.add_argument('--fps', type=float, default=30.0, help='Camera rate.')
    p.add_argument('--seconds', type=float, default=10.0, help='Length of a measured phase.')
    p.add_argument('--lessons', type=int, default=3, help='Lessons before consolidating.')
    p.add_argument('--gather-frames', type=int, default=100, help='Frames per lesson.')
    p.add_argument('--learner-param', action='append', default=[], metavar='NAME:=VALUE',
                   help='A learner parameter, e.g. inference.max_rate:=60.0 (repeatable).')
    return p.parse_args(argv)


class Stream:
    """Publishes 640x480 rgb8 frames of a photo object at a fixed rate, stamped with now."""

    def __init__(self, node, fps: float):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from cl_core_ros.data.photos import render_frames
        self._image = Image
        self.node = node
        self.pub = node.create_publisher(Image, 'image_raw', qos_profile_sensor_data)
        self.objects = {}
        for name in ('chelsea', 'coffee', 'rocket', 'motorcycle'):
            frames = render_frames(name, 1, 30, size=480)
            canvas = np.full((len(frames), 480, 640, 3), 70, np.uint8)
            canvas[:, :, 80:560] = frames
            self.objects[name] = [f.tobytes() for f in canvas]
        self.current = 'chelsea'
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(1.0 / fps,), daemon=True)
        self._thread.start()

    def _run(self, period):
        next_t = time.monotonic()
        while not self._stop.is_set():
            data = self.objects[self.current][self.sent % 30]
            msg = self._image(height=480, width=640, encoding='rgb8', step=1920, data=data)
            msg.header.stamp = self.node.get_clock().now().to_msg()
            msg.header.frame_id = 'bench_camera'
            self.pub.publish(msg)
            self.sent += 1
            next_t += period
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def close(self):
        """Stop publishing."""
        self._stop.set()
        self._thread.join(timeout=5)


def _summary(phase: str, samples: list[tuple[float, float]], t0: float, t1: float,
             inference: list[tuple[float, float]] = ()) -> dict:
    lat = np.array([lat for t, lat in samples if t0 <= t <= t1]) * 1000
    inf = np.array([s for t, s in inference if t0 <= t <= t1]) * 1000
    n = len(lat)
    return {'phase': phase, 'seconds': round(t1 - t0, 2), 'predictions': n,
            'rate_hz': round(n / max(t1 - t0, 1e-9), 1),
            'latency_p50_ms': round(float(np.percentile(lat, 50)), 1) if n else None,
            'latency_p99_ms': round(float(np.percentile(lat, 99)), 1) if n else None,
            'inference_p50_ms': round(float(np.percentile(inf, 50)), 1) if len(inf) else None}


def main(argv=None) -> int:  # noqa: C901 - one linear measurement script
    """Run the benchmark."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    from cl_core_ros.loopback import apply_loopback_env
    env = apply_loopback_env(out / 'ros_log')
    from cl_core_ros.tools.node_process import NodeProcess
    learner_args = ['-p', f'state_dir:={out / "state"}']
    for value in args.learner_param:
        learner_args += ['-p', value]
    procs = [NodeProcess.executable('camera_node', env, out, ['-p', 'max_rate:=30.0']),
             NodeProcess.executable('learner_node', env, out, learner_args)]
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.time import Time

    from cl_core_ros.msg import LearnerStatus, Prediction
    from cl_core_ros.nodes.learner_node import LATCHED
    from cl_core_ros.srv import Consolidate, LabelObject, StartLearning
    from cl_core_ros.tools.ros_calls import call_service, wait_until
    rclpy.init()
    node = Node('benchmark_ros')
    samples: list[tuple[float, float]] = []
    inference: list[tuple[float, float]] = []  # seconds the learner spent per frame
    status: list = []

    def on_pred(msg):
        now = node.get_clock().now()
        samples.append((time.monotonic(), (now - Time.from_msg(msg.header.stamp)).nanoseconds
                        / 1e9))
        inference.append((time.monotonic(), msg.inference_seconds))
    node.create_subscription(Prediction, 'predictions', on_pred, 100)
    node.create_subscription(LearnerStatus, 'learner/status', status.append, LATCHED)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    stream = Stream(node, args.fps)

    def call(srv_type, name, request, timeout=600.0):
        return call_service(node, srv_type, name, request, timeout)

    wait = wait_until

    rows = []
    try:
        wait(lambda: len(samples) > 30, 180, 'predictions')
        t0, sent0 = time.monotonic(), stream.sent
        time.sleep(args.seconds)
        rows.append(_summary('idle', samples, t0, time.monotonic(), inference))
        rows[-1]['camera_fps_sent'] = round((stream.sent - sent0) / (time.monotonic() - t0), 1)

        names = list(stream.objects)
        learn_windows = []
        for i in range(args.lessons):
            stream.current = names[i % len(names)]
            call(LabelObject, 'learner/label_object',
                 LabelObject.Request(label=stream.current, num_frames=args.gather_frames))
            t0 = time.monotonic()
            wait(lambda: status and status[-1].frames_gathered >= args.gather_frames, 300,
                 'gathering')
            if i == 0:
                rows.append(_summary('gathering', samples, t0, time.monotonic(), inference))
            t0 = time.monotonic()
            resp = call(StartLearning, 'learner/start_learning', StartLearning.Request())
            learn_windows.append((t0, time.monotonic(), resp.training_seconds))
        learn_samples = [s for s in samples
                         if any(a <= s[0] <= b + 0.5 for a, b, _ in learn_windows)]
        total = sum(b + 0.5 - a for a, b, _ in learn_windows)
        row = _summary('learning', learn_samples, 0, float('inf'))
        row['seconds'] = round(total, 2)
        row['rate_hz'] = round(row['predictions'] / total, 1)
        row['training_seconds_median'] = round(float(np.median(
            [s for _, _, s in learn_windows])), 3)
        rows.append(row)

        t0 = time.monotonic()
        resp = call(Consolidate, 'learner/consolidate', Consolidate.Request(force=True))
        row = _summary('consolidating', samples, t0, time.monotonic(), inference)
        row['consolidation_seconds'] = round(resp.seconds, 1)
        rows.append(row)
    finally:
        stream.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        for p in procs:
            p.stop()

    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != 'phase', k))
    with open(out / 'benchmark_ros.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    result = {'fps': args.fps, 'frame': '640x480 rgb8', 'phases': rows,
              'targets': {'idle_rate_hz': 25, 'idle_p50_ms': 50, 'consolidating_rate_hz': 15}}
    (out / 'benchmark_ros.json').write_text(json.dumps(result, indent=2))
    print(f'{"phase":>14} {"rate Hz":>8} {"p50 ms":>8} {"p99 ms":>8} {"n":>6}  extra')
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in
                 ('phase', 'rate_hz', 'latency_p50_ms', 'latency_p99_ms', 'predictions',
                  'seconds')}
        print(f'{r["phase"]:>14} {r["rate_hz"]:>8} {r["latency_p50_ms"]!s:>8} '
              f'{r["latency_p99_ms"]!s:>8} {r["predictions"]:>6}  {extra}')
    print(f'targets: idle >= 25 Hz and p50 <= 50 ms; >= 15 Hz while consolidating. '
          f'Outputs: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
