"""Compressed camera images (sensor_msgs/CompressedImage) -> RGB uint8 arrays, bombs refused.

The ``format`` string is parsed as image_transport writes it and honoured:

- ``jpeg``, ``png`` (and ``bmp``, ``tiff``, ``webp``, ``ppm``), or empty: the container is
  recognised from the data; a named one must match it;
- ``<encoding>; jpeg compressed <buffer>`` and ``<encoding>; png compressed <buffer>``
  (compressed_image_transport): ``<buffer>`` is the channel order of the buffer that was given
  to the encoder (OpenCV encoders take BGR: ``rgb8`` there means red and blue went in swapped
  and are swapped back here); a mono ``<encoding>`` gives a grey frame;
- ``<encoding>; compressedDepth [png]`` (compressed_depth_image_transport): a 12-byte header,
  then a 16-bit PNG of the depth (``16UC1``) or of the quantised inverse depth (``32FC1``);
  shown as grey scaled over the frame's valid range. ``rvl`` depth is refused.

Anything else is refused as ``unsupported_format``. Pillow reads the size from the header
(:func:`PIL.Image.open` is lazy: no pixel is decoded), the size is checked against
``max_pixels``, and only then is the image decoded, from the same header that was
checked (8-bit JPEG and PNG by OpenCV, faster, from the same header; the rest by Pillow). So
memory stays bounded by ``max_pixels`` whatever the segment layout of a JPEG or the declared
size of a PNG, BMP, TIFF or WebP.
"""

from dataclasses import dataclass
import io
import re
import struct
import warnings

import cv2
import numpy as np
from PIL import features, Image

from cl_core_ros.core.raw_image import FrameError

__all__ = ['CompressedFormat', 'compressed_to_rgb', 'CONTAINERS', 'parse_format']

# format word -> Pillow format name
_CONTAINER_WORDS = {'jpeg': 'JPEG', 'jpg': 'JPEG', 'png': 'PNG', 'bmp': 'BMP', 'tiff': 'TIFF',
                    'tif': 'TIFF', 'ppm': 'PPM', 'pgm': 'PPM', 'pnm': 'PPM'}
if features.check('webp'):
    _CONTAINER_WORDS['webp'] = 'WEBP'
CONTAINERS = tuple(sorted(set(_CONTAINER_WORDS.values())))
_BUFFER_ORDERS = {'': 'bgr', 'bgr8': 'bgr', 'bgra8': 'bgr', 'bgr16': 'bgr', 'bgra16': 'bgr',
                  'rgb8': 'rgb', 'rgba8': 'rgb', 'rgb16': 'rgb', 'rgba16': 'rgb',
                  'mono8': 'mono', 'mono16': 'mono', '8UC1': 'mono', '16UC1': 'mono',
                  '8UC3': 'bgr', '8UC4': 'bgr', '16UC3': 'bgr', '16UC4': 'bgr'}
_MONO_ENCODINGS = {'mono8', 'mono16', '8UC1', '16UC1'}
_OPENCV_MODES = {'RGB', 'RGBA', 'L', 'LA', 'P', 'PA', '1', 'CMYK', 'YCbCr'}
_TRANSPORT = re.compile(r'^(jpeg|png|tiff) compressed ?(\S*)$')
_DEPTH = re.compile(r'^compressedDepth(?: (\w+))?$')
_DEPTH_HEADER = struct.Struct('<iff')  # compression format, depth quantisation A and B

# Our own max_pixels check follows Image.open; Pillow's warning below its limit is noise here,
# its error above twice that limit is refused as too_large.
warnings.filterwarnings('ignore', category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class CompressedFormat:
    """A parsed CompressedImage ``format``.

    ``container``: Pillow format name the data must have ('' = any of :data:`CONTAINERS`);
    ``encoding``: the publisher's image encoding ('' = not given); ``buffer_order``: channel
    order of the buffer given to the encoder (``bgr``, ``rgb`` or ``mono``); ``depth``: the
    depth encoding of a compressedDepth image ('' otherwise).
    """

    container: str = ''
    encoding: str = ''
    buffer_order: str = 'bgr'
    depth: str = ''


def parse_format(text: str) -> CompressedFormat:
    """Parse an image_transport format string; raise FrameError(``unsupported_format``)."""
    text = text.strip()
    if ';' not in text:
        word = text.lower()
        if word and word not in _CONTAINER_WORDS:
            raise _unsupported(text)
        return CompressedFormat(container=_CONTAINER_WORDS.get(word, ''))
    encoding, rest = (part.strip() for part in text.split(';', 1))
    depth = _DEPTH.match(rest)
    if depth:
        if encoding not in ('16UC1', '32FC1') or (depth.group(1) or 'png') != 'png':
            raise FrameError('unsupported_format',
                             f"'{text[:64]}': only 16UC1 and 32FC1 compressedDepth png are "
                             'supported')
        return CompressedFormat(container='PNG', encoding=encoding, buffer_order='mono',
                                depth=encoding)
    transport = _TRANSPORT.match(rest)
    if not transport or transport.group(2) not in _BUFFER_ORDERS:
        raise _unsupported(text)
    order = 'mono' if encoding in _MONO_ENCODINGS else _BUFFER_ORDERS[transport.group(2)]
    return CompressedFormat(container=_CONTAINER_WORDS[transport.group(1)], encoding=encoding,
                            buffer_order=order)


def _unsupported(text: str) -> FrameError:
    return FrameError('unsupported_format',
                      f"'{text[:64]}' (supported: {', '.join(sorted(_CONTAINER_WORDS))}, "
                      "'<encoding>; jpeg|png|tiff compressed <encoding>', "
                      "'16UC1|32FC1; compressedDepth png')")


def compressed_to_rgb(fmt: str, data, *, max_pixels: int, max_bytes: int) -> np.ndarray:
    """Decode compressed image bytes to a (height, width, 3) uint8 RGB array.

    Args:
        fmt: the CompressedImage ``format`` (see the module docstring).
        data: the compressed bytes (bytes, array.array, memoryview or a uint8 numpy array).
        max_pixels: images declaring more pixels are refused before decoding.
        max_bytes: larger data is refused before it is read.

    Raises:
        FrameError: reasons ``empty``, ``too_large``, ``unsupported_format``,
            ``format_mismatch`` (the data is not the container ``fmt`` names) and
            ``decode_failed`` (unreadable header or pixel data).

    """
    spec = parse_format(fmt)
    raw = _as_bytes(data)
    if len(raw) == 0:
        raise FrameError('empty', 'no compressed data')
    if len(raw) > max_bytes:
        raise FrameError('too_large', f'{len(raw)} compressed bytes > {max_bytes}')
    if spec.depth:
        if len(raw) <= _DEPTH_HEADER.size:
            raise FrameError('decode_failed', f'compressedDepth data of {len(raw)} bytes')
        _, quant_a, quant_b = _DEPTH_HEADER.unpack(raw[:_DEPTH_HEADER.size])
        raw = raw[_DEPTH_HEADER.size:]
    try:
        with Image.open(io.BytesIO(raw), formats=[spec.container] if spec.container
                        else CONTAINERS) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise FrameError('too_large', f'{image.format} declares {width}x{height}, more '
                                 f'than {max_pixels} pixels')
            if width <= 0 or height <= 0:
                raise FrameError('empty', f'{image.format} declares {width}x{height}')
            pixels = _decode(image, spec, raw)
    except FrameError:
        raise
    except Image.DecompressionBombError as exc:
        raise FrameError('too_large', str(exc)[:200]) from exc
    except Exception as exc:  # noqa: BLE001 - any failure of a decoder on foreign data
        if spec.container and isinstance(exc, Image.UnidentifiedImageError):
            found = _identify(raw)
            if found and found != spec.container:
                raise FrameError('format_mismatch', f"format '{fmt[:64]}' but the data is "
                                 f'{found}') from exc
        raise FrameError('decode_failed', f'{type(exc).__name__}: {str(exc)[:200]}') from exc
    if spec.depth:
        return _depth_to_rgb(pixels, spec.depth, quant_a, quant_b)
    return pixels


def _as_bytes(data) -> memoryview:
    if isinstance(data, np.ndarray):
        return memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
    try:
        return memoryview(data).cast('B')
    except TypeError:  # a list of ints
        return memoryview(bytes(data))


def _identify(raw: memoryview) -> str:
    """Return the accepted container whose signature starts ``raw`` ('' if none)."""
    Image.init()
    prefix = bytes(raw[:16])
    for name in CONTAINERS:
        accept = Image.OPEN.get(name, (None, None))[1]
        try:
            if accept is not None and accept(prefix):
                return name
        except Exception:  # noqa: BLE001 - only used to word an error
            continue
    return ''


def _decode(image: Image.Image, spec: CompressedFormat, raw: memoryview) -> np.ndarray:
    """Decode a sized Pillow image: RGB uint8, or the raw uint16 samples of a depth image.

    8-bit JPEG and PNG are decoded by OpenCV (about 3x faster than Pillow here): libjpeg and
    libpng read the same SOF / IHDR that Pillow sized (libjpeg refuses a second SOF), and the
    decoded shape is checked against it.
    """
    if image.format in ('JPEG', 'PNG') and image.mode in _OPENCV_MODES and not spec.depth:
        grey = spec.buffer_order == 'mono'
        flags = (cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR) \
            | cv2.IMREAD_IGNORE_ORIENTATION
        pixels = cv2.imdecode(np.frombuffer(raw, np.uint8), flags)
        if pixels is None or pixels.shape[:2] != (image.height, image.width):
            raise FrameError('decode_failed', f'{image.format} data do not decode to the '
                             f'{image.width}x{image.height} of its header')
        if grey:
            return cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
        # OpenCV returns the encoder's buffer order: BGR, or RGB if an rgb buffer went in
        return pixels if spec.buffer_order == 'rgb' else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if spec.depth:
        if image.mode not in ('I;16', 'I;16B', 'I;16L', 'I'):
            raise FrameError('decode_failed', f'compressedDepth PNG of mode {image.mode}')
        return np.asarray(image).astype(np.uint16)
    if image.mode in ('I;16', 'I;16B', 'I;16L', 'I', 'F'):  # 16-bit grey: like mono16
        samples = np.asarray(image).astype(np.float32)
        lo, hi = float(samples.min()), float(samples.max())
        grey = ((samples - lo) * (255.0 / max(hi - lo, 1.0))).astype(np.uint8)
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    if spec.buffer_order == 'mono':
        grey = np.asarray(image.convert('L'))
        return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    rgb = np.asarray(image.convert('RGB'))
    if spec.buffer_order == 'rgb':  # the encoder took R for B: swap back
        rgb = rgb[:, :, ::-1]
    return np.ascontiguousarray(rgb)


def _depth_to_rgb(samples: np.ndarray, encoding: str, quant_a: float,
                  quant_b: float) -> np.ndarray:
    """Grey frame of a depth image: valid (non-zero) depths scaled over their own range."""
    valid = samples > 0
    depth = samples.astype(np.float32)
    if encoding == '32FC1':  # samples are quantised inverse depth: A / (q - B)
        with np.errstate(divide='ignore', invalid='ignore'):
            depth = np.where(valid, quant_a / (depth - quant_b), 0.0)
        valid &= np.isfinite(depth) & (depth > 0)
    grey = np.zeros(samples.shape, np.uint8)
    if valid.any():
        lo, hi = float(depth[valid].min()), float(depth[valid].max())
        grey[valid] = ((depth[valid] - lo) * (255.0 / max(hi - lo, 1e-6))).astype(np.uint8)
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
