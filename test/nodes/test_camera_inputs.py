"""Through a running camera node: the inputs of public bug reports, every common encoding.

The node runs in its own process over loopback DDS, under numpy 1 (the venv's) and numpy 2 (a
numpy 2 wheel put first on PYTHONPATH by scripts/setup.sh: the conversions of big-endian data
that cv_bridge fails under numpy 2 run there too). Each bad input must be dropped under its
reason while the node goes on, and each good one must come out with known pixel values.
"""

import os
from pathlib import Path
import struct

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

pytestmark = [pytest.mark.ros, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
NUMPY2 = REPO / 'build' / 'numpy2'
SIDE = 32  # frames are SIDE x SIDE, published at output_size SIDE: pixels come out unchanged
COLOUR = (200, 100, 30)


def _uniform(encoding: str, data: np.ndarray, step: int, frame_id: str, big=False) -> Image:
    return Image(header=Header(frame_id=frame_id), height=SIDE, width=SIDE, encoding=encoding,
                 step=step, is_bigendian=int(big), data=np.ascontiguousarray(data).tobytes())


def _good_images() -> dict[str, tuple[Image | CompressedImage, tuple[int, int, int], int]]:
    """frame_id -> (message, expected RGB of every pixel, tolerance)."""
    rgb = np.full((SIDE, SIDE, 3), COLOUR, np.uint8)
    c16 = rgb.astype(np.uint16) << 8
    red_yuyv = np.tile(np.array([81, 90, 81, 240], np.uint8), (SIDE, SIDE // 2))
    red_uyvy = np.tile(np.array([90, 81, 240, 81], np.uint8), (SIDE, SIDE // 2))
    nv21 = np.vstack([np.full((SIDE, SIDE), 81, np.uint8),
                      np.tile(np.array([240, 90], np.uint8), (SIDE // 2, SIDE // 2))])
    red = np.zeros((SIDE, SIDE, 3), np.uint8)
    red[..., 0] = 255
    jpeg_of_rgb_buffer = cv2.imencode('.jpg', red)[1].tobytes()
    return {
        'rgb8_bigendian': (_uniform('rgb8', rgb, SIDE * 3, 'rgb8_bigendian', big=True),
                           COLOUR, 0),
        'rgb16_bigendian': (_uniform('rgb16', c16.astype('>u2'), SIDE * 6, 'rgb16_bigendian',
                                     big=True), COLOUR, 0),
        'bgr16_littleendian': (_uniform('bgr16', c16[..., ::-1].astype('<u2'), SIDE * 6,
                                        'bgr16_littleendian'), COLOUR, 0),
        '8UC3': (_uniform('8UC3', rgb[..., ::-1], SIDE * 3, '8UC3'), COLOUR, 0),
        '8UC1': (_uniform('8UC1', rgb[..., 0], SIDE, '8UC1'), (200,) * 3, 0),
        'rgba8': (_uniform('rgba8', np.dstack([rgb, rgb[..., :1]]), SIDE * 4, 'rgba8'),
                  COLOUR, 0),
        'yuv422_yuy2': (_uniform('yuv422_yuy2', red_yuyv, SIDE * 2, 'yuv422_yuy2'),
                        (255, 0, 0), 3),
        'yuv422': (_uniform('yuv422', red_uyvy, SIDE * 2, 'yuv422'), (255, 0, 0), 3),
        'nv21': (Image(header=Header(frame_id='nv21'), height=SIDE, width=SIDE, encoding='nv21',
                       step=SIDE, data=nv21.tobytes()), (255, 0, 0), 3),
        'jpeg_rgb8_buffer': (CompressedImage(header=Header(frame_id='jpeg_rgb8_buffer'),
                                             format='rgb8; jpeg compressed rgb8',
                                             data=jpeg_of_rgb_buffer), (255, 0, 0), 6),
    }


def _bmp_header(width: int, height: int) -> bytes:
    return (b'BM' + struct.pack('<IHHI', 54, 0, 0, 54)
            + struct.pack('<IiiHHIIiiII', 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0))


def _jpeg_bomb() -> bytes:
    jpeg = bytearray(cv2.imencode('.jpg', np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    sof = jpeg.index(b'\xff\xc0')
    jpeg[sof + 5:sof + 9] = struct.pack('>HH', 30000, 30000)
    app = b'\xff\xe1' + struct.pack('>H', 65535) + bytes(65533)
    return bytes(jpeg[:2] + app + jpeg[2:])


def _bad_inputs() -> list[tuple[str, CompressedImage | Image, str]]:
    return [
        ('compressed', CompressedImage(format='bmp', data=_bmp_header(2_000_000, 1)),
         'decode_failed'),
        ('compressed', CompressedImage(format='jpeg', data=_jpeg_bomb()), 'too_large'),
        ('compressed', CompressedImage(format='h264', data=b'\x00\x00\x01'),
         'unsupported_format'),
        ('compressed', CompressedImage(format='png', data=_jpeg_bomb()), 'format_mismatch'),
        ('raw', Image(height=SIDE, width=SIDE, encoding='32FC1', step=SIDE * 4,
                      data=bytes(SIDE * SIDE * 4)), 'unsupported_encoding'),
        ('raw', Image(height=SIDE, width=SIDE - 1, encoding='yuyv', step=SIDE * 2,
                      data=bytes(SIDE * SIDE * 2)), 'bad_size'),
    ]


def camera_values(diags: list) -> dict[str, str]:
    """The newest key/values of the camera's diagnostics status."""
    for msg in reversed(diags):
        for status in msg.status:
            if status.name.endswith(': camera'):
                return {kv.key: kv.value for kv in status.values}
    return {}


@pytest.mark.parametrize('numpy_major', [1, 2])
def test_camera_node_survives_bad_input_and_converts_every_encoding(numpy_major, start_node,
                                                                    probe, ros_env):
    env = dict(ros_env)
    if numpy_major == 2:
        assert (NUMPY2 / 'numpy').is_dir(), f'{NUMPY2} is missing: run scripts/setup.sh'
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(NUMPY2), env.get('PYTHONPATH')]))
    camera = start_node('camera_node', ['-p', f'output_size:={SIDE}', '-p', 'max_rate:=200.0',
                                        '-p', 'diagnostics_period:=0.2'], env=env)
    frames = probe.collect(Image, '/frames', qos_profile_sensor_data)
    diags = probe.collect(DiagnosticArray, '/diagnostics', 50)
    pubs = {'raw': probe.node.create_publisher(Image, '/image_raw', qos_profile_sensor_data),
            'compressed': probe.node.create_publisher(CompressedImage, '/image_raw/compressed',
                                                      qos_profile_sensor_data)}
    probe.spin_until(lambda: all(p.get_subscription_count() for p in pubs.values())
                     and camera_values(diags), 60, 'camera subscriptions and diagnostics')
    maps = Path(f'/proc/{camera.pid}/maps').read_text()
    assert (str(NUMPY2) in maps) == (numpy_major == 2), 'the numpy the node runs on'

    for topic, msg, reason in _bad_inputs():
        before = int(camera_values(diags).get(f'dropped.{reason}', 0))
        probe.spin_until(
            lambda m=msg, t=topic, r=reason, b=before: pubs[t].publish(m)
            or int(camera_values(diags).get(f'dropped.{r}', 0)) > b, 30, f'a {reason} drop')
        assert camera.alive(), camera.tail()

    for frame_id, (msg, colour, tol) in _good_images().items():
        topic = 'compressed' if isinstance(msg, CompressedImage) else 'raw'
        probe.spin_until(lambda m=msg, t=topic, f=frame_id: pubs[t].publish(m) or any(
            x.header.frame_id == f for x in frames), 30, f'the {frame_id} frame')
        out = next(x for x in frames if x.header.frame_id == frame_id)
        pixels = np.frombuffer(bytes(out.data), np.uint8).reshape(SIDE, SIDE, 3)
        err = np.abs(pixels.astype(int) - np.array(colour)).max()
        assert err <= tol, (frame_id, pixels[SIDE // 2, SIDE // 2], colour)
    values = camera_values(diags)
    assert values.get('callback_errors') == '0', values
    assert camera.alive(), camera.tail()
