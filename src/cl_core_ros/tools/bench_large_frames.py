"""Benchmark: how many large camera frames reach the camera node on a default DDS set-up.

A camera driver does not use this project's Fast DDS profile (whose shared-memory segment is
enlarged). This runs the camera node and a stream publisher (in this process, like a driver in
its own) with Fast DDS at its defaults but bound to 127.0.0.1
(``config/fastdds_loopback_defaults.xml``), sends ``--frames`` frames at ``--fps`` per case and
reads how many the camera node received from its ``/diagnostics``. Cases: raw rgb8 at each
``--sizes`` and JPEG (quality 90) of the same frame on the compressed topic, each with the
camera's ``qos.reliability`` best_effort and reliable; the publisher is reliable, as most
drivers' are (image_transport's default). ``--profile project``
runs the same on the project's own profile. Prints a table (the machine may be loaded: compare
rows of one run).
"""

import argparse
import sys
import tempfile
import time

import numpy as np


def parse_args(argv):
    """Parse options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--frames', type=int, default=225, help='Frames sent per case.')
    p.add_argument('--fps', type=float, default=15.0, help='Stream rate.')
    p.add_argument('--sizes', default='1920x1080,1280x720,640x480',
                   help='Comma-separated WxH of the raw frames.')
    p.add_argument('--profile', choices=('defaults', 'project'), default='defaults',
                   help='Fast DDS defaults on loopback, or the project profile.')
    p.add_argument('--no-jpeg', action='store_true', help='Leave out the compressed cases.')
    p.add_argument('--stream', metavar='WxH', default='',
                   help='Only publish --frames raw rgb8 frames of this size at --fps on '
                        'image_raw (a stand-in camera driver, for tests), then exit.')
    p.add_argument('--reliability', choices=('reliable', 'best_effort'), default='reliable',
                   help='QoS reliability of the --stream publisher.')
    return p.parse_args(argv)


def frame_message(width: int, height: int, jpeg: bool = False):
    """Return a smooth random rgb8 Image (or its quality-90 JPEG as a CompressedImage)."""
    import cv2
    from sensor_msgs.msg import CompressedImage, Image
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (height // 8, width // 8, 3), np.uint8),
                      (width, height), interpolation=cv2.INTER_LINEAR)
    if jpeg:
        data = cv2.imencode('.jpg', base, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        return CompressedImage(format='bgr8; jpeg compressed bgr8', data=data)
    return Image(height=height, width=width, encoding='rgb8', step=width * 3,
                 data=base.tobytes())


def publish_frames(pub, msg, frames: int, fps: float, spin) -> float:
    """Publish ``msg`` ``frames`` times at ``fps`` calling ``spin(seconds)`` between; seconds."""
    start = time.monotonic()
    for i in range(frames):
        pub.publish(msg)
        next_at = start + (i + 1) / fps
        while time.monotonic() < next_at:
            spin(max(0.0, next_at - time.monotonic()))
    return time.monotonic() - start


def stream(opts) -> int:
    """Publish raw frames on image_raw once a subscriber is there (the --stream mode)."""
    import rclpy
    from rclpy.duration import Duration
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    width, height = (int(v) for v in opts.stream.lower().split('x'))
    rclpy.init()
    node = rclpy.create_node('large_frame_stream')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        pub = node.create_publisher(Image, 'image_raw', QoSProfile(
            depth=10, reliability=(ReliabilityPolicy.RELIABLE if opts.reliability == 'reliable'
                                   else ReliabilityPolicy.BEST_EFFORT)))
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        seconds = publish_frames(pub, frame_message(width, height), opts.frames, opts.fps,
                                 lambda t: executor.spin_once(timeout_sec=t))
        if opts.reliability == 'reliable':  # let the last frames be delivered before exiting
            pub.wait_for_all_acked(Duration(seconds=15))
        print(f'sent {opts.frames} frames in {seconds:.1f} s', flush=True)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _camera_values(diags: list) -> dict[str, str] | None:
    for msg in reversed(diags):
        for status in msg.status:
            if status.name.endswith(': camera'):
                return {kv.key: kv.value for kv in status.values}
    return None


def run_case(env: dict, log_dir, *, width: int, height: int, reliability: str, jpeg: bool,
             frames: int, fps: float) -> dict:
    """Send ``frames`` frames to a fresh camera node; return sent, received and the rate."""
    from diagnostic_msgs.msg import DiagnosticArray
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from cl_core_ros.tools.node_process import NodeProcess
    camera = NodeProcess.executable('camera_node', env, log_dir, [
        '-p', f'qos.reliability:={reliability}', '-p', 'diagnostics_period:=0.5',
        '-p', 'max_rate:=30.0'])
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('large_frame_stream', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        diags: list = []
        node.create_subscription(DiagnosticArray, '/diagnostics', diags.append, 10)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        kind, topic = (CompressedImage, '/image_raw/compressed') if jpeg else (Image, '/image_raw')
        pub = node.create_publisher(kind, topic, qos)
        msg = frame_message(width, height, jpeg)
        deadline = time.monotonic() + 60
        while (pub.get_subscription_count() == 0 or _camera_values(diags) is None) \
                and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        if pub.get_subscription_count() == 0:
            raise RuntimeError(f'camera node did not subscribe:\n{camera.tail()}')
        sent_s = publish_frames(pub, msg, frames, fps,
                                lambda t: executor.spin_once(timeout_sec=t))
        end = time.monotonic() + 3.0  # late arrivals and the next diagnostics
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        values = _camera_values(diags) or {}
        return {'sent': frames, 'received': int(values.get('received', 0)),
                'lost': int(values.get('lost', 0)), 'input': values.get('input', '?'),
                'seconds': sent_s, 'bytes': len(msg.data)}
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        camera.stop()


def main(argv=None) -> int:
    """Run the cases and print the table."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.stream:
        return stream(opts)
    import os
    from pathlib import Path

    from cl_core_ros.loopback import DEFAULTS_PROFILE_NAME, loopback_env, PROFILE_NAME
    log_dir = Path(tempfile.mkdtemp(prefix='bench_large_frames_'))
    env = loopback_env(log_dir, profile=DEFAULTS_PROFILE_NAME if opts.profile == 'defaults'
                       else PROFILE_NAME)
    os.environ.update(env)  # this process's stream publisher uses the same profile
    cases = []
    for size in opts.sizes.split(','):
        width, height = (int(v) for v in size.lower().split('x'))
        for jpeg in (False,) if opts.no_jpeg else (False, True):
            for reliability in ('best_effort', 'reliable'):
                cases.append((width, height, reliability, jpeg))
    print(f'Fast DDS profile: {env["FASTDDS_DEFAULT_PROFILES_FILE"]}; {opts.frames} frames at '
          f'{opts.fps:g} Hz per case, reliable publisher')
    print(f'{"frame":>10} {"topic":>11} {"camera qos":>12} {"MB/frame":>9} {"received":>9} '
          f'{"share":>6} {"lost":>5}  camera diagnostics input')
    for width, height, reliability, jpeg in cases:
        row = run_case(env, log_dir, width=width, height=height, reliability=reliability,
                       jpeg=jpeg, frames=opts.frames, fps=opts.fps)
        print(f'{width}x{height:<5} {"compressed" if jpeg else "raw":>11} {reliability:>12} '
              f'{row["bytes"] / 1e6:9.2f} {row["received"]:>5}/{row["sent"]:<3} '
              f'{100 * row["received"] / row["sent"]:5.0f}% {row["lost"]:>5}  {row["input"]}',
              flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
