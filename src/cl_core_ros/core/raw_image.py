"""Raw camera images (sensor_msgs/Image fields) -> RGB uint8 arrays, with every bad input refused.

One decoder for the live camera and learner nodes and for the offline bag reader. It takes the
fields of a ``sensor_msgs/msg/Image`` (an rclpy message, a ``rosbags`` message or anything with
``encoding``, ``height``, ``width``, ``step``, ``is_bigendian`` and ``data``) and uses numpy and
OpenCV only: no cv_bridge, so it behaves the same under numpy 1 and numpy 2 and with big-endian
data. Every failure raises :class:`FrameError` with a short ``reason`` (used in per-reason drop
counters) before any large buffer is allocated.

Encodings are the REP-118 / ``sensor_msgs/image_encodings`` names; :data:`ENCODINGS` says how
each one is read and :data:`SUPPORTED_ENCODINGS` lists them. YUV encodings use OpenCV's
ITU-R BT.601 limited-range conversions.
"""

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ['ENCODINGS', 'Encoding', 'FrameError', 'image_fields_to_rgb', 'raw_to_rgb',
           'SUPPORTED_ENCODINGS']


class FrameError(ValueError):
    """An image that cannot be turned into a frame; ``reason`` is a short tag for counters."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


@dataclass(frozen=True)
class Encoding:
    """How one encoding is laid out.

    ``layout`` is ``packed`` (``channels`` interleaved samples of ``depth`` bytes per pixel),
    ``yuv422`` (2 bytes per pixel, ``order`` uyvy or yuyv), ``nv`` (a Y plane, then an
    interleaved chroma plane; ``order`` nv12, nv21 or nv24) or ``bayer`` (one sample per
    pixel, ``order`` the pattern of the first two rows). ``order`` of a packed encoding is its
    channel order (rgb, bgr, rgba, bgra, mono). ``note`` is shown in the README table.
    """

    layout: str
    order: str
    channels: int = 1
    depth: int = 1
    note: str = ''


def _packed(order: str, depth: int, note: str = '') -> Encoding:
    return Encoding('packed', order, channels=len(order) if order != 'mono' else 1, depth=depth,
                    note=note)


ENCODINGS: dict[str, Encoding] = {
    'rgb8': _packed('rgb', 1), 'bgr8': _packed('bgr', 1),
    'rgba8': _packed('rgba', 1, 'alpha dropped'), 'bgra8': _packed('bgra', 1, 'alpha dropped'),
    'mono8': _packed('mono', 1),
    '8UC1': _packed('mono', 1, 'read as mono8'),
    '8UC3': _packed('bgr', 1, 'read as bgr8 (OpenCV order, what `cv2_to_imgmsg` sends)'),
    '8UC4': _packed('bgra', 1, 'read as bgra8 (OpenCV order)'),
    'rgb16': _packed('rgb', 2, 'high byte'), 'bgr16': _packed('bgr', 2, 'high byte'),
    'rgba16': _packed('rgba', 2, 'high byte'), 'bgra16': _packed('bgra', 2, 'high byte'),
    'mono16': _packed('mono', 2, 'scaled from its own min..max'),
    '16UC1': _packed('mono', 2, 'depth: scaled from its own min..max'),
    '16UC3': _packed('bgr', 2, 'read as bgr16 (OpenCV order)'),
    '16UC4': _packed('bgra', 2, 'read as bgra16 (OpenCV order)'),
    'yuv422': Encoding('yuv422', 'uyvy', note='UYVY (U Y0 V Y1), even width'),
    'uyvy': Encoding('yuv422', 'uyvy', note='same as yuv422'),
    'yuv422_yuy2': Encoding('yuv422', 'yuyv', note='YUYV (Y0 U Y1 V), even width; most USB '
                            'webcams'),
    'yuyv': Encoding('yuv422', 'yuyv', note='same as yuv422_yuy2'),
    'nv12': Encoding('nv', 'nv12', note='Y plane, then U V interleaved at half size; even sides'),
    'nv21': Encoding('nv', 'nv21', note='Y plane, then V U interleaved at half size; even sides'),
    'nv24': Encoding('nv', 'nv24', note='Y plane, then U V interleaved at full size; chroma '
                     'halved horizontally for OpenCV, even width'),
}
for _pattern in ('rggb', 'bggr', 'gbrg', 'grbg'):
    ENCODINGS[f'bayer_{_pattern}8'] = Encoding('bayer', _pattern, note='demosaiced')
    ENCODINGS[f'bayer_{_pattern}16'] = Encoding('bayer', _pattern, depth=2,
                                                note='high byte, demosaiced')

SUPPORTED_ENCODINGS = tuple(sorted(ENCODINGS))

# OpenCV names its Bayer codes after the second row's second and third pixels; ROS after the
# first row.
_BAYER_TO_RGB = {
    'rggb': cv2.COLOR_BayerBG2RGB, 'bggr': cv2.COLOR_BayerRG2RGB,
    'gbrg': cv2.COLOR_BayerGR2RGB, 'grbg': cv2.COLOR_BayerGB2RGB,
}
_YUV_TO_RGB = {'uyvy': cv2.COLOR_YUV2RGB_UYVY, 'yuyv': cv2.COLOR_YUV2RGB_YUYV,
               'nv12': cv2.COLOR_YUV2RGB_NV12, 'nv21': cv2.COLOR_YUV2RGB_NV21}


def image_fields_to_rgb(msg: object, *, max_pixels: int) -> np.ndarray:
    """Decode an object with the fields of sensor_msgs/Image; see :func:`raw_to_rgb`."""
    return raw_to_rgb(str(msg.encoding), int(msg.height), int(msg.width), int(msg.step),
                      msg.data, big_endian=bool(msg.is_bigendian), max_pixels=max_pixels)


def raw_to_rgb(encoding: str, height: int, width: int, step: int, data, *,
               big_endian: bool = False, max_pixels: int) -> np.ndarray:
    """Return a raw image as a (height, width, 3) uint8 RGB array.

    Args:
        encoding: a name in :data:`SUPPORTED_ENCODINGS` (surrounding blanks ignored).
        height, width: image size in pixels.
        step: bytes per row of the (first) plane, >= the bytes of one row of pixels.
        data: the bytes (bytes, bytearray, array.array, memoryview or a uint8 numpy array).
        big_endian: byte order of 16-bit samples.
        max_pixels: larger images are refused before anything is copied.

    Raises:
        FrameError: reasons ``unsupported_encoding``, ``empty``, ``too_large``, ``bad_size``
            (odd sides where the encoding needs even ones), ``bad_step``, ``truncated``.

    """
    enc = encoding.strip()
    spec = ENCODINGS.get(enc)
    if spec is None:
        raise FrameError('unsupported_encoding',
                         f"'{enc[:32]}' (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    if height <= 0 or width <= 0:
        raise FrameError('empty', f'{width}x{height} image')
    if height * width > max_pixels:
        raise FrameError('too_large', f'{width}x{height} exceeds {max_pixels} pixels')
    if spec.layout == 'yuv422' and width % 2:
        raise FrameError('bad_size', f'{enc} needs an even width, got {width}')
    if spec.layout == 'nv' and (width % 2 or (height % 2 and spec.order != 'nv24')):
        raise FrameError('bad_size', f'{enc} needs even sides, got {width}x{height}')
    row = width * (2 if spec.layout == 'yuv422' else spec.channels * spec.depth)
    if step < row:
        raise FrameError('bad_step', f'step {step} < bytes per row {row}')
    rows = height
    if spec.layout == 'nv':  # chroma rows follow the luma rows, with the same step
        rows = height * 3 if spec.order == 'nv24' else height * 3 // 2
    buf = _as_uint8(data)
    if buf.size < step * rows:
        raise FrameError('truncated', f'{buf.size} bytes < {step * rows} ({rows} rows of {step})')
    plane = buf[:step * rows].reshape(rows, step)
    if spec.layout == 'yuv422':
        yuv = np.ascontiguousarray(plane[:, :row]).reshape(height, width, 2)
        return cv2.cvtColor(yuv, _YUV_TO_RGB[spec.order])
    if spec.layout == 'nv':
        return _nv_to_rgb(plane, height, width, spec.order)
    samples = np.ascontiguousarray(plane[:, :row])
    if spec.depth == 2:
        samples = samples.view('>u2' if big_endian else '<u2').astype(np.uint16)
        samples = _to_8bit(samples, spec.order == 'mono' and spec.layout == 'packed')
    if spec.layout == 'bayer':
        return cv2.cvtColor(samples.reshape(height, width), _BAYER_TO_RGB[spec.order])
    pixels = samples.reshape(height, width, spec.channels)
    if spec.order == 'mono':
        return cv2.cvtColor(pixels[:, :, 0], cv2.COLOR_GRAY2RGB)
    if spec.order.startswith('bgr'):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def _as_uint8(data) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a list of ints
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _nv_to_rgb(plane: np.ndarray, height: int, width: int, order: str) -> np.ndarray:
    if order != 'nv24':
        return cv2.cvtColor(np.ascontiguousarray(plane[:, :width]), _YUV_TO_RGB[order])
    # NV24 (4:4:4): OpenCV has no conversion for it; keep every other chroma pair (4:2:2) and
    # use OpenCV's UYVY one, the same BT.601 matrix as the other YUV encodings.
    luma = plane[:height, :width]
    chroma = plane[height:].reshape(height, -1)[:, :2 * width].reshape(height, width, 2)
    uyvy = np.empty((height, width, 2), np.uint8)
    uyvy[:, :, 1] = luma
    uyvy[:, 0::2, 0] = chroma[:, 0::2, 0]  # U of each pixel pair
    uyvy[:, 1::2, 0] = chroma[:, 0::2, 1]  # V
    return cv2.cvtColor(uyvy, cv2.COLOR_YUV2RGB_UYVY)


def _to_8bit(samples: np.ndarray, used_range: bool) -> np.ndarray:
    """16 -> 8 bits: the high byte, or for mono/depth the frame's own min..max range."""
    if not used_range:
        return (samples >> 8).astype(np.uint8)
    lo, hi = int(samples.min()), int(samples.max())
    scale = 255.0 / max(hi - lo, 1)
    return ((samples.astype(np.float32) - lo) * scale).astype(np.uint8)
