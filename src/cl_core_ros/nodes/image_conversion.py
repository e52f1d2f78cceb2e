"""sensor_msgs images -> RGB uint8 arrays, with every malformed input rejected clearly.

cv_bridge does the decoding; this module checks what cv_bridge would trust blindly (sizes, step,
data length, encoding) and handles what it does not convert to rgb8 (16-bit colour, mono and
bayer). Every failure raises :class:`FrameError` with a short reason, used in throttled warnings
and per-reason drop counters.
"""

import cv2
from cv_bridge import CvBridge, CvBridgeError
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

_BRIDGE = CvBridge()

# encoding -> (channels, bytes per channel)
_LAYOUT = {
    'rgb8': (3, 1), 'bgr8': (3, 1), 'rgba8': (4, 1), 'bgra8': (4, 1), 'mono8': (1, 1),
    '8UC1': (1, 1), '8UC3': (3, 1), '8UC4': (4, 1),
    'rgb16': (3, 2), 'bgr16': (3, 2), 'rgba16': (4, 2), 'bgra16': (4, 2), 'mono16': (1, 2),
    '16UC1': (1, 2), '16UC3': (3, 2),
    'bayer_rggb8': (1, 1), 'bayer_bggr8': (1, 1), 'bayer_gbrg8': (1, 1), 'bayer_grbg8': (1, 1),
    'bayer_rggb16': (1, 2), 'bayer_bggr16': (1, 2), 'bayer_gbrg16': (1, 2),
    'bayer_grbg16': (1, 2),
}
# OpenCV names its Bayer codes after the second row; ROS after the first.
_BAYER_TO_RGB = {
    'rggb': cv2.COLOR_BayerBG2RGB, 'bggr': cv2.COLOR_BayerRG2RGB,
    'gbrg': cv2.COLOR_BayerGR2RGB, 'grbg': cv2.COLOR_BayerGB2RGB,
}
SUPPORTED_ENCODINGS = tuple(sorted(_LAYOUT))


class FrameError(ValueError):
    """An image message that cannot be turned into a frame; ``reason`` is a short tag."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f'{reason}: {detail}')
        self.reason = reason


def image_to_rgb(msg: Image, *, max_pixels: int) -> np.ndarray:
    """Return ``msg`` as an HxWx3 uint8 RGB array or raise :class:`FrameError`."""
    enc = msg.encoding.strip()
    if enc not in _LAYOUT:
        raise FrameError('unsupported_encoding',
                         f"'{enc[:32]}' (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    channels, depth = _LAYOUT[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise FrameError('empty', f'{w}x{h} image')
    if h * w > max_pixels:
        raise FrameError('too_large', f'{w}x{h} exceeds {max_pixels} pixels')
    row = w * channels * depth
    if step < row:
        raise FrameError('bad_step', f'step {step} < width*channels*bytes {row}')
    if len(msg.data) < step * h:
        raise FrameError('truncated', f'{len(msg.data)} bytes < step*height {step * h}')
    if depth == 1 and not enc.startswith('bayer'):
        if step != row or len(msg.data) != step * h:  # padded rows: not every bridge copes
            packed = np.frombuffer(bytes(msg.data[:step * h]), np.uint8).reshape(h, step)
            msg = Image(header=msg.header, height=h, width=w, encoding=enc, step=row,
                        is_bigendian=msg.is_bigendian,
                        data=np.ascontiguousarray(packed[:, :row]).tobytes())
        try:
            return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding='rgb8'))
        except (CvBridgeError, ValueError, TypeError, KeyError, cv2.error) as exc:
            raise FrameError('decode_failed', str(exc)[:200]) from exc
    dtype = np.dtype('>u2' if msg.is_bigendian else '<u2') if depth == 2 else np.uint8
    buf = np.frombuffer(bytes(msg.data[:step * h]), dtype=np.uint8).reshape(h, step)[:, :row]
    arr = np.ascontiguousarray(buf).view(dtype).reshape(h, w, channels)
    if depth == 2:
        arr = _to_8bit(arr.astype(np.uint16), enc)
    if enc.startswith('bayer'):
        return cv2.cvtColor(arr[:, :, 0], _BAYER_TO_RGB[enc.split('_')[1][:4]])
    if channels == 1:
        return cv2.cvtColor(arr[:, :, 0], cv2.COLOR_GRAY2RGB)
    if enc.startswith('bgr'):
        arr = arr[:, :, 2::-1]
    return np.ascontiguousarray(arr[:, :, :3])


def _to_8bit(arr: np.ndarray, enc: str) -> np.ndarray:
    """Scale 16-bit data to 8 bits: full range for colour, the used range for mono/depth."""
    if enc in ('mono16', '16UC1'):
        lo, hi = int(arr.min()), int(arr.max())
        scale = 255.0 / max(hi - lo, 1)
        return ((arr.astype(np.float32) - lo) * scale).astype(np.uint8)
    return (arr >> 8).astype(np.uint8)


def compressed_to_rgb(msg: CompressedImage, *, max_pixels: int, max_bytes: int) -> np.ndarray:
    """Decode a CompressedImage (jpeg/png) to HxWx3 uint8 RGB or raise :class:`FrameError`."""
    if not msg.data:
        raise FrameError('empty', 'no compressed data')
    if len(msg.data) > max_bytes:
        raise FrameError('too_large', f'{len(msg.data)} compressed bytes > {max_bytes}')
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    # Read the header first so that a decompression bomb is refused before it is decoded.
    header = _peek_size(raw)
    if header is not None and header[0] * header[1] > max_pixels:
        raise FrameError('too_large', f'{header[0]}x{header[1]} exceeds {max_pixels} pixels')
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if img is None:
        raise FrameError('decode_failed', f"cannot decode format '{msg.format[:32]}'")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise FrameError('too_large', f'{img.shape[1]}x{img.shape[0]} exceeds {max_pixels}')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _peek_size(raw: np.ndarray) -> tuple[int, int] | None:
    """Return (width, height) from a PNG or JPEG header, None if not found."""
    data = raw[:65536].tobytes()
    if data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) >= 24:
        return int.from_bytes(data[16:20], 'big'), int.from_bytes(data[20:24], 'big')
    if data[:2] == b'\xff\xd8':
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2:i + 4], 'big')
            if marker in (0xC0, 0xC1, 0xC2):
                return (int.from_bytes(data[i + 7:i + 9], 'big'),
                        int.from_bytes(data[i + 5:i + 7], 'big'))
            i += 2 + length
    return None


def rgb_to_image(rgb: np.ndarray, header) -> Image:
    """Build an rgb8 Image message with ``header`` from an HxWx3 uint8 array."""
    h, w = rgb.shape[:2]
    return Image(header=header, height=h, width=w, encoding='rgb8', is_bigendian=0,
                 step=w * 3, data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
