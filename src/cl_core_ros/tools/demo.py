"""Demo: teach a robot objects by service calls and watch it recognise them.

Brings the camera, learner and consolidation nodes up (``bringup``, one real process, loopback
DDS), then plays the part of the camera driver and of the operator: it publishes 640x480 frames
of objects filmed in sessions, teaches each object with ``~/label_object`` +
``~/start_learning``, shows held-out sessions of every object and prints the top-3 predictions
as they change, shows an object it never taught, asks for a deep consolidation while
predictions keep flowing, and saves annotated frames and a plot under ``--out``.

``--source photos`` (default): real photos (scikit-image's bundled pictures) as objects, each
session with its own pose, light and plain or textured background; the held-out check shows
another session. ``--source hard``: the hard stream (:mod:`cl_core_ros.data.scenes`): 4
photographic cut-out objects taught from training sessions over photographic backgrounds, the
held-out check on test sessions whose background photos were never seen while teaching, and an
object never taught as the stranger.
"""

import argparse
from dataclasses import dataclass
import functools
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
SOURCES = ('photos', 'hard')
DEFAULT_PHOTOS = 'chelsea,coffee,rocket,motorcycle'
HARD_TAUGHT = 4
SESSION_FRAMES = 60  # frames rendered per session; the camera cycles through them
WIDTH, HEIGHT = 640, 480
CANVAS_GREY = 90


@dataclass
class Shown:
    """What the fake camera shows: an object in a session, from a frame index on."""

    name: str
    session: object  # the source's session key
    frames: np.ndarray
    frame: int = 0


class PhotoScenes:
    """scikit-image's photos as objects; a session is 480x480, centred in the camera frame.

    Session keys are the photo sessions themselves (teaching and held-out alike).
    """

    def __init__(self, names: list[str], stranger: str, seed: int = 0):
        self.taught = names
        self.stranger = stranger
        self.seed = seed

    def label(self, name: str) -> str:
        """Return the label an object is taught under."""
        return OBJECTS[name]

    def lesson(self, session: int) -> int:
        """Return the key of teaching session ``session``."""
        return session

    def held_out(self, session: int) -> int:
        """Return the key of held-out session ``session``."""
        return session

    def spare(self) -> int:
        """Return the key of a session shown while consolidating (shown nowhere else)."""
        return 7

    def frames(self, name: str, session: int) -> np.ndarray:
        """Render the frames of a session (N x 480 x 480 x 3)."""
        from cl_core_ros.data.photos import render_frames
        return render_frames(name, session, SESSION_FRAMES, size=HEIGHT, seed=self.seed)


class HardScenes:
    """The hard stream: taught objects in training sessions, held out on unseen backgrounds.

    Session keys are (split, index): teaching session k is the training split's session
    k - 1 and held-out session k the test split's session k - 1 (background photos no training
    session uses). The stranger is the stream's first never-taught object.
    """

    def __init__(self, seed: int = 0):
        from cl_core_ros.data.scenes import make_stream, short_name
        self.stream = make_stream(n_taught=HARD_TAUGHT, n_never_taught=1, seed=seed)
        self.taught = list(self.stream.taught)
        self.stranger = self.stream.never_taught[0]
        objects = [*self.taught, self.stranger]
        shorts = [short_name(o) for o in objects]
        self.labels = {o: s if shorts.count(s) == 1 else o for o, s in zip(objects, shorts)}

    def label(self, name: str) -> str:
        """Return the label an object is taught under (its short name)."""
        return self.labels[name]

    def lesson(self, session: int) -> tuple[str, int]:
        """Return the key of teaching session ``session`` (a training session)."""
        return 'train', session - 1

    def held_out(self, session: int) -> tuple[str, int]:
        """Return the key of held-out session ``session`` (a test session)."""
        return 'test', session - 1

    def spare(self) -> tuple[str, int]:
        """Return the key of a session shown while consolidating (shown nowhere else)."""
        return 'test', len(self.stream.test_backgrounds)

    def frames(self, name: str, session: tuple[str, int]) -> np.ndarray:
        """Render the frames of a session (N x 480 x 640 x 3)."""
        split, index = session
        return self.stream.frames(name, split, index, SESSION_FRAMES,
                                  frame_size=(WIDTH, HEIGHT))


def parse_args(argv):
    """Parse the demo's options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='out/demo', help='Directory for outputs and state.')
    p.add_argument('--source', choices=SOURCES, default='photos',
                   help='photos: scikit-image photos as objects (default); hard: photographic '
                        'objects over photographic backgrounds, held out on unseen ones.')
    p.add_argument('--objects', default=None,
                   help=f'--source photos: photos to teach, from: {", ".join(OBJECTS)} '
                        f'(default {DEFAULT_PHOTOS}). --source hard teaches {HARD_TAUGHT} '
                        'objects of the hard stream (see --seed).')
    p.add_argument('--frames', type=int, default=30, help='Frames gathered per object.')
    p.add_argument('--fps', type=float, default=15.0, help='Camera frame rate.')
    p.add_argument('--sessions', type=lambda v: [int(x) for x in v.split(',')], default=[1, 2],
                   help='Sessions each object is taught in (one lesson each), e.g. 1,2 '
                        '(--source hard: training sessions, counted from 1).')
    p.add_argument('--test-session', type=int, default=None,
                   help='Held-out session shown (default 3; --source hard: the test session, '
                        'counted from 1, default 1).')
    p.add_argument('--stranger', default=None,
                   help='--source photos: a photo shown but never taught (should come out '
                        '"unknown"; default clock). --source hard shows a never-taught object.')
    p.add_argument('--seed', type=int, default=0,
                   help='Seed of the sessions (--source hard: also of the objects chosen).')
    p.add_argument('--keep-state', action='store_true',
                   help='Keep what an earlier run learned (default: start from nothing).')
    return p.parse_args(argv)


def _scenes(args) -> PhotoScenes | HardScenes | str:
    """Return the source's scenes, or a message saying why the options do not fit."""
    if args.source == 'hard':
        given = [o for o, v in (('--objects', args.objects), ('--stranger', args.stranger))
                 if v is not None]
        if given:
            return f'{" and ".join(given)}: for --source photos only'
        if min(args.sessions + [args.test_session or 1]) < 1:
            return '--source hard counts sessions from 1'
        try:
            return HardScenes(args.seed)
        except (FileNotFoundError, ValueError) as exc:
            return f'the hard stream is not available: {exc}'
    names = [n.strip() for n in (args.objects or DEFAULT_PHOTOS).split(',') if n.strip()]
    stranger = args.stranger or 'clock'
    unknown_names = [n for n in names if n not in OBJECTS]
    if stranger not in OBJECTS:
        return f'--stranger {stranger}: choose from {sorted(OBJECTS)}'
    if stranger in names:
        return f'--stranger {stranger} must not be taught'
    if unknown_names:
        return f'unknown objects {unknown_names}; choose from {list(OBJECTS)}'
    return PhotoScenes(names, stranger, args.seed)


def main(argv=None) -> int:  # noqa: C901 - a linear script reads best in one piece
    """Run the demo; return 0 when every taught object is recognised on held-out frames."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out).resolve()
    state_dir = out / 'state'
    scenes = _scenes(args)
    if isinstance(scenes, str):
        print(scenes, file=sys.stderr)
        return 2
    if args.test_session is None:
        args.test_session = 1 if args.source == 'hard' else 3
    if not args.keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)

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
        return _run(args, scenes, out, alive=nodes.alive)
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


def _camera_frame(img: np.ndarray) -> np.ndarray:
    """Return ``img`` as a 640x480 camera frame (a smaller one centred on a grey canvas)."""
    if img.shape[:2] == (HEIGHT, WIDTH):
        return img
    canvas = np.full((HEIGHT, WIDTH, 3), CANVAS_GREY, np.uint8)
    y0, x0 = (HEIGHT - img.shape[0]) // 2, (WIDTH - img.shape[1]) // 2
    canvas[y0:y0 + img.shape[0], x0:x0 + img.shape[1]] = img
    return canvas


def _run(args, scenes: PhotoScenes | HardScenes, out: Path, *, alive=None) -> int:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from cl_core_ros.msg import LearnerStatus, Prediction
    from cl_core_ros.nodes.learner_node import LATCHED
    from cl_core_ros.srv import Consolidate, LabelObject, StartLearning
    from cl_core_ros.tools.ros_calls import call_service, wait_until

    names = scenes.taught
    labels = {name: scenes.label(name) for name in [*names, scenes.stranger]}
    frames_of = functools.lru_cache(maxsize=2)(scenes.frames)

    def show(name, session):
        # rendered here, then swapped in whole: the camera never sees a half-set scene
        current[0] = Shown(name, session, frames_of(name, session))

    rclpy.init()
    node = Node('demo_operator')
    current = [Shown(names[0], scenes.lesson(1), frames_of(names[0], scenes.lesson(1)))]
    predictions: list[tuple[float, str, Prediction]] = []
    annotated: dict[str, np.ndarray] = {}
    status: list[LearnerStatus] = []
    pub = node.create_publisher(Image, 'image_raw', qos_profile_sensor_data)

    def publish_frame():
        cur = current[0]
        canvas = _camera_frame(cur.frames[cur.frame % len(cur.frames)])
        cur.frame += 1
        msg = Image(height=HEIGHT, width=WIDTH, encoding='rgb8', step=WIDTH * 3,
                    data=canvas.tobytes())
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = 'demo_camera'
        pub.publish(msg)

    node.create_timer(1.0 / args.fps, publish_frame)
    node.create_subscription(
        Prediction, 'predictions',
        lambda m: predictions.append((time.monotonic(), current[0].name, m)), 10)
    node.create_subscription(LearnerStatus, 'learner/status', status.append, LATCHED)

    def on_annotated(msg):
        annotated[current[0].name] = np.frombuffer(bytes(msg.data), np.uint8).reshape(
            msg.height, msg.width, 3)
    node.create_subscription(Image, 'learner/annotated_image', on_annotated,
                             qos_profile_sensor_data)
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    def call(srv_type, name, request, timeout=600.0):
        return call_service(node, srv_type, name, request, timeout, alive=alive)

    wait = wait_until

    try:
        wait(lambda: predictions, 120, 'the first prediction (model loading)')
        print('[demo] predictions are flowing; the robot knows nothing yet')
        # Two lessons per object, in two sessions (other background, light, pose): the second
        # one adds to a known class, as an operator would when the robot gets it wrong.
        for session in args.sessions:
            for name in names:
                label = labels[name]
                show(name, scenes.lesson(session))
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
            show(name, scenes.held_out(args.test_session))
            start = time.monotonic()
            wait(lambda s=start, o=name: sum(
                t > s + 1.5 and n == o for t, n, _ in predictions) >= 10,
                30, f'predictions on {name}')
            seen = [m for t, n, m in predictions if t > start + 1.5 and n == name]
            _print_changes(labels[name], seen)
            top1 = [m.labels[0] if m.labels and not m.unknown else 'unknown' for m in seen]
            results[name] = top1.count(labels[name]) / len(top1)

        # Open set: an object nobody taught should come out as "unknown".
        stranger = scenes.stranger
        show(stranger, scenes.held_out(args.test_session))
        start = time.monotonic()
        wait(lambda: sum(t > start + 1.5 and n == stranger for t, n, _ in predictions) >= 10,
             30, 'predictions on an untaught object')
        seen = [m for t, n, m in predictions if t > start + 1.5 and n == stranger]
        unknown_share = sum(m.unknown for m in seen) / len(seen)
        print(f'[demo] never taught: {labels[stranger]!r} -> "unknown" in '
              f'{unknown_share * 100:.0f}% of predictions (top-1 otherwise: '
              f'{seen[-1].labels[0] if seen[-1].labels else "-"})')

        show(names[0], scenes.spare())
        before = len(predictions)
        t0 = time.monotonic()
        resp = call(Consolidate, 'learner/consolidate', Consolidate.Request(force=True), 300)
        during = len(predictions) - before
        rate = during / max(time.monotonic() - t0, 1e-6)
        print(f'[demo] consolidate: {resp.message}; {during} predictions arrived meanwhile '
              f'({rate:.1f} Hz)')
        _save_outputs(out, names, labels, annotated, predictions)
        ok = all(acc >= 0.5 for acc in results.values())
        for name, acc in results.items():
            print(f'[demo] {labels[name]:>12}: {acc * 100:5.1f}% of held-out predictions '
                  'correct (top-1)')
        print(f'[demo] outputs in {out}: annotated.png, scores.png, nodes.log')
        print('[demo] result:', 'every object recognised' if ok else 'some objects missed')
        return 0 if ok else 1
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def _print_changes(label: str, seen) -> None:
    last = None
    for m in seen:
        top = ', '.join(f'{lab} {s * 100:.0f}%' for lab, s in zip(m.labels, m.scores))
        key = (tuple(m.labels[:1]), m.unknown)
        if key != last:
            flag = ' (unknown)' if m.unknown else ''
            print(f'    shown {label:>12} -> top-3: {top}{flag}')
            last = key


def _save_outputs(out: Path, names, labels, annotated, predictions) -> None:
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
        pts = [(t - t0, _score(m, labels[name])) for t, _, m in predictions]
        if pts:
            ax.plot(*zip(*pts), label=labels[name], lw=1)
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
