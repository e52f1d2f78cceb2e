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
    return p.parse_args(argv)


def _received(diags: list, camera: str) -> int | None:
    for msg in reversed(diags):
        for status in msg.status:
            if status.name.endswith(': camera'):
                values = {kv.key: kv.value for kv in status.values}
                return int(values['received'])
    return None


def run_case(env: dict, log_dir, *, width: int, height: int, reliability: str, jpeg: bool,
             frames: int, fps: float) -> dict:
    """Send ``frames`` frames to a fresh camera node; return sent, received and the rate."""
    import cv2
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
        rng = np.random.default_rng(0)
        base = cv2.resize(rng.integers(0, 256, (height // 8, width // 8, 3), np.uint8),
                          (width, height), interpolation=cv2.INTER_LINEAR)
        if jpeg:
            data = cv2.imencode('.jpg', base, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            msg = CompressedImage(format='bgr8; jpeg compressed bgr8', data=data)
        else:
            msg = Image(height=height, width=width, encoding='rgb8', step=width * 3,
                        data=base.tobytes())
        deadline = time.monotonic() + 60
        while (pub.get_subscription_count() == 0 or _received(diags, 'camera') is None) \
                and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        if pub.get_subscription_count() == 0:
            raise RuntimeError(f'camera node did not subscribe:\n{camera.tail()}')
        start = time.monotonic()
        for i in range(frames):
            pub.publish(msg)
            next_at = start + (i + 1) / fps
            while time.monotonic() < next_at:
                executor.spin_once(timeout_sec=max(0.0, next_at - time.monotonic()))
        sent_s = time.monotonic() - start
        end = time.monotonic() + 3.0  # late arrivals and the next diagnostics
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        received = _received(diags, 'camera') or 0
        return {'sent': frames, 'received': received, 'seconds': sent_s,
                'bytes': len(msg.data)}
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        camera.stop()


def main(argv=None) -> int:
    """Run the cases and print the table."""
    opts = parse_args(sys.argv[1:] if argv is None else argv)
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
          f'{"share":>6}')
    for width, height, reliability, jpeg in cases:
        row = run_case(env, log_dir, width=width, height=height, reliability=reliability,
                       jpeg=jpeg, frames=opts.frames, fps=opts.fps)
        print(f'{width}x{height:<5} {"compressed" if jpeg else "raw":>11} {reliability:>12} '
              f'{row["bytes"] / 1e6:9.2f} {row["received"]:>5}/{row["sent"]:<3} '
              f'{100 * row["received"] / row["sent"]:5.0f}%', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
