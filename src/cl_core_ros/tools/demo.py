"""Demo: teach a robot objects by service calls and watch it recognise them.

Brings the camera, learner and consolidation nodes up (``bringup``, one real process, loopback
DDS), then plays the part of the camera driver and of the operator: it publishes 640x480 frames
of real photos (scikit-image's bundled pictures, filmed as objects in sessions), teaches each
object with ``~/label_object`` + ``~/start_learning``, shows held-out sessions of every object
and prints the top-3 predictions as they change, asks for a deep consolidation while
predictions keep flowing, and saves annotated frames and a plot under ``--out``.
"""

import argparse
from dataclasses import dataclass
import os
from pathlib import Path
import shutil
import sys
import threading
import time

import numpy as np
import yaml

OBJECTS = {'chelsea': 'cat', 'coffee': 'coffee mug', 'rocket': 'rocket',
           'motorcycle': 'motorbike', 'astronaut': 'astronaut', 'clock': 'clock'}


@dataclass
class Shown:
    """What the fake camera shows: an object in a session, from a frame index on."""

    name: str
    session: int
    frame: int = 0


def parse_args(argv):
    """Parse the demo's options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='out/demo', help='Directory for outputs and state.')
    p.add_argument('--objects', default='chelsea,coffee,rocket,motorcycle',
                   help=f'Photos to teach, from: {", ".join(OBJECTS)}.')
    p.add_argument('--frames', type=int, default=30, help='Frames gathered per object.')
    p.add_argument('--fps', type=float, default=15.0, help='Camera frame rate.')
    p.add_argument('--sessions', type=lambda v: [int(x) for x in v.split(',')], default=[1, 2],
                   help='Sessions each object is taught in (one lesson each), e.g. 1,2.')
    p.add_argument('--test-session', type=int, default=3, help='Held-out session shown.')
    p.add_argument('--stranger', default='clock', choices=sorted(OBJECTS),
                   help='A photo shown but never taught (should come out "unknown").')
    p.add_argument('--keep-state', action='store_true',
                   help='Keep what an earlier run learned (default: start from nothing).')
    return p.parse_args(argv)


def main(argv=None) -> int:  # noqa: C901 - a linear script reads best in one piece
    """Run the demo; return 0 when every taught object is recognised on held-out frames."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out).resolve()
    state_dir = out / 'state'
    if not args.keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.objects.split(',') if n.strip()]
    unknown_names = [n for n in names if n not in OBJECTS]
    if args.stranger in names:
        print(f'--stranger {args.stranger} must not be taught', file=sys.stderr)
        return 2
    if unknown_names:
        print(f'unknown objects {unknown_names}; choose from {list(OBJECTS)}', file=sys.stderr)
        return 2

    from cl_core_ros.loopback import apply_loopback_env
    env = apply_loopback_env(out / 'ros_log')
    params = _demo_params(out)
    from cl_core_ros.tools.node_process import executable_path, NodeProcess
    nodes = NodeProcess([sys.executable, str(executable_path('bringup')),
                         f'params_file:={params}', f'state_dir:={state_dir}'], env,
                        out / 'nodes.log')
    print(f'[demo] nodes started (pid {nodes.pid}, domain {env["ROS_DOMAIN_ID"]}, loopback '
          f'only); log: {out / "nodes.log"}')
    try:
        return _run(args, names, out)
    finally:
        nodes.stop()


def _demo_params(out: Path) -> Path:
    """Write the package's parameters, with faster gathering and consolidation for a short demo."""
    from cl_core_ros.nodes.runtime import share_dir
    data = yaml.safe_load((share_dir() / 'config' / 'learner.yaml').read_text())
    data['/**/learner']['ros__parameters']['gather']['rate'] = 10.0
    data['/**/consolidation']['ros__parameters'].update(
        {'period': 1.0, 'min_idle_seconds': 1.0, 'min_new_experiences': 10**5})
    path = out / 'demo_params.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


def _run(args, names: list[str], out: Path) -> int:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from cl_core_ros.data.photos import render_frames
    from cl_core_ros.msg import LearnerStatus, Prediction
    from cl_core_ros.nodes.learner_node import LATCHED
    from cl_core_ros.srv import Consolidate, LabelObject, StartLearning
    from cl_core_ros.tools.ros_calls import call_service, wait_until

    rclpy.init()
    node = Node('demo_operator')
    shown = Shown(names[0], 1)
    cache: dict[tuple[str, int], np.ndarray] = {}
    predictions: list[tuple[float, str, Prediction]] = []
    annotated: dict[str, np.ndarray] = {}
    status: list[LearnerStatus] = []
    pub = node.create_publisher(Image, 'image_raw', qos_profile_sensor_data)

    def frames_of(name, session):
        if (name, session) not in cache:
            cache[(name, session)] = render_frames(name, session, 60, size=480)
        return cache[(name, session)]

    def publish_frame():
        cur = shown
        frames = frames_of(cur.name, cur.session)
        img = frames[cur.frame % len(frames)]
        canvas = np.full((480, 640, 3), 90, np.uint8)
        canvas[:, 80:560] = img
        cur.frame += 1
        msg = Image(height=480, width=640, encoding='rgb8', step=640 * 3, data=canvas.tobytes())
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = 'demo_camera'
        pub.publish(msg)

    node.create_timer(1.0 / args.fps, publish_frame)
    node.create_subscription(Prediction, 'predictions',
                             lambda m: predictions.append((time.monotonic(), shown.name, m)), 10)
    node.create_subscription(LearnerStatus, 'learner/status', status.append, LATCHED)

    def on_annotated(msg):
        annotated[shown.name] = np.frombuffer(bytes(msg.data), np.uint8).reshape(
            msg.height, msg.width, 3)
    node.create_subscription(Image, 'learner/annotated_image', on_annotated,
                             qos_profile_sensor_data)
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    def call(srv_type, name, request, timeout=600.0):
        return call_service(node, srv_type, name, request, timeout)

    wait = wait_until

    try:
        wait(lambda: predictions, 120, 'the first prediction (model loading)')
        print('[demo] predictions are flowing; the robot knows nothing yet')
        # Two lessons per object, in two sessions (other background, light, pose): the second
        # one adds to a known class, as an operator would when the robot gets it wrong.
        for session in args.sessions:
            for name in names:
                label = OBJECTS[name]
                shown.name, shown.session, shown.frame = name, session, 0
                resp = call(LabelObject, 'learner/label_object',
                            LabelObject.Request(label=label, num_frames=args.frames))
                print(f'[demo] label_object({label!r}): {resp.message}')
                if not resp.success:
                    return 1
                wait(lambda: status and status[-1].frames_gathered >= args.frames, 60,
                     f'gathering of {label}')
                resp = call(StartLearning, 'learner/start_learning', StartLearning.Request())
                print(f'[demo] start_learning: {resp.message} (model v{resp.model_version}, '
                      f'stored as state v{resp.state_version})')
                if not resp.success:
                    return 1

        print('[demo] held-out sessions of every object:')
        results = {}
        for name in names:
            shown.name, shown.session, shown.frame = name, args.test_session, 0
            start = time.monotonic()
            wait(lambda s=start, o=name: sum(
                t > s + 1.5 and n == o for t, n, _ in predictions) >= 10,
                30, f'predictions on {name}')
            seen = [m for t, n, m in predictions if t > start + 1.5 and n == name]
            _print_changes(name, seen)
            top1 = [m.labels[0] if m.labels and not m.unknown else 'unknown' for m in seen]
            results[name] = top1.count(OBJECTS[name]) / len(top1)

        # Open set: an object nobody taught should come out as "unknown".
        stranger = args.stranger
        shown.name, shown.session, shown.frame = stranger, args.test_session, 0
        start = time.monotonic()
        wait(lambda: sum(t > start + 1.5 and n == stranger for t, n, _ in predictions) >= 10,
             30, 'predictions on an untaught object')
        seen = [m for t, n, m in predictions if t > start + 1.5 and n == stranger]
        unknown_share = sum(m.unknown for m in seen) / len(seen)
        print(f'[demo] never taught: {OBJECTS[stranger]!r} -> "unknown" in '
              f'{unknown_share * 100:.0f}% of predictions (top-1 otherwise: '
              f'{seen[-1].labels[0] if seen[-1].labels else "-"})')

        shown.name, shown.session = names[0], 7
        before = len(predictions)
        t0 = time.monotonic()
        resp = call(Consolidate, 'learner/consolidate', Consolidate.Request(force=True), 300)
        during = len(predictions) - before
        rate = during / max(time.monotonic() - t0, 1e-6)
        print(f'[demo] consolidate: {resp.message}; {during} predictions arrived meanwhile '
              f'({rate:.1f} Hz)')
        _save_outputs(out, names, annotated, predictions)
        ok = all(acc >= 0.5 for acc in results.values())
        for name, acc in results.items():
            print(f'[demo] {OBJECTS[name]:>12}: {acc * 100:5.1f}% of held-out predictions '
                  'correct (top-1)')
        print(f'[demo] outputs in {out}: annotated.png, scores.png, nodes.log')
        print('[demo] result:', 'every object recognised' if ok else 'some objects missed')
        return 0 if ok else 1
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def _print_changes(name: str, seen) -> None:
    last = None
    for m in seen:
        top = ', '.join(f'{lab} {s * 100:.0f}%' for lab, s in zip(m.labels, m.scores))
        key = (tuple(m.labels[:1]), m.unknown)
        if key != last:
            flag = ' (unknown)' if m.unknown else ''
            print(f'    shown {OBJECTS[name]:>12} -> top-3: {top}{flag}')
            last = key


def _save_outputs(out: Path, names, annotated, predictions) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    tiles = [annotated[n] for n in names if n in annotated]
    if tiles:
        h = min(t.shape[0] for t in tiles)
        import cv2
        row = np.concatenate([cv2.resize(t, (h, h)) for t in tiles], axis=1)
        cv2.imwrite(str(out / 'annotated.png'), cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
    fig, ax = plt.subplots(figsize=(9, 3.5))
    t0 = predictions[0][0] if predictions else 0.0
    for name in names:
        pts = [(t - t0, _score(m, OBJECTS[name])) for t, _, m in predictions]
        if pts:
            ax.plot(*zip(*pts), label=OBJECTS[name], lw=1)
    ax.set_xlabel('time (s)')
    ax.set_ylabel('score')
    ax.set_title('cl_core_ros demo: score of each taught object over time')
    ax.legend(loc='upper left', fontsize=8)
    fig.tight_layout()
    fig.savefig(out / 'scores.png', dpi=100)
    plt.close(fig)


def _score(msg, label: str) -> float:
    for lab, s in zip(msg.labels, msg.scores):
        if lab == label:
            return float(s)
    return 0.0


if __name__ == '__main__':
    os.environ.setdefault('PYTHONUNBUFFERED', '1')
    sys.exit(main())
