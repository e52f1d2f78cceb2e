"""Compressed images -> RGB: image_transport formats honoured, bombs refused before decoding."""

import io
from pathlib import Path
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
from PIL import Image
import pytest

from cl_core_ros.core.compressed_image import (
    compressed_to_rgb,
    CONTAINERS,
    parse_format,
)
from cl_core_ros.core.raw_image import FrameError

RGB = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
MAX = 40_000_000  # the camera node's default max_pixels
REPO = Path(__file__).resolve().parents[2]


def _decode(fmt: str, data: bytes, **kw) -> np.ndarray:
    return compressed_to_rgb(fmt, data, max_pixels=kw.get('max_pixels', MAX),
                             max_bytes=kw.get('max_bytes', 100_000_000))


def _reason(fmt: str, data: bytes, **kw) -> str:
    with pytest.raises(FrameError) as info:
        _decode(fmt, data, **kw)
    return info.value.reason


def _encode(ext: str, buffer: np.ndarray, *params) -> bytes:
    ok, out = cv2.imencode(ext, buffer, list(params))
    assert ok
    return out.tobytes()


# ----- format strings ------------------------------------------------------------------------
def test_an_rgb_buffer_given_to_the_jpeg_encoder_comes_back_red():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    jpeg = _encode('.jpg', red)  # compressed_image_transport with an rgb8 buffer
    pixel = _decode('rgb8; jpeg compressed rgb8', jpeg)[8, 8]
    assert pixel[0] >= 250 and pixel[1] <= 5 and pixel[2] <= 5, pixel
    pixel = _decode('rgb8; jpeg compressed bgr8', _encode('.jpg', red[..., ::-1]))[8, 8]
    assert pixel[0] >= 250 and pixel[2] <= 5, pixel


@pytest.mark.parametrize(('fmt', 'buffer'), [
    ('png', RGB[..., ::-1]), ('', RGB[..., ::-1]), ('bgr8; png compressed bgr8', RGB[..., ::-1]),
    ('rgb8; png compressed rgb8', RGB), ('rgba8; png compressed rgba8', RGB),
    ('bgra8; png compressed bgra8', RGB[..., ::-1]), ('8UC3; png compressed bgr8', RGB[..., ::-1]),
])
def test_lossless_formats_give_the_exact_pixels(fmt, buffer):
    np.testing.assert_array_equal(_decode(fmt, _encode('.png', np.ascontiguousarray(buffer))),
                                  RGB)


def test_mono_and_sixteen_bit_transports():
    grey = RGB[..., 0].copy()
    out = _decode('mono8; jpeg compressed ', _encode('.jpg', grey, cv2.IMWRITE_JPEG_QUALITY, 100))
    assert (out[..., 0] == out[..., 1]).all() and np.abs(out[..., 0].astype(int) - grey).max() < 8
    depth = np.array([[1000, 2000], [3000, 1000]], np.uint16)
    out = _decode('mono16; png compressed mono16', _encode('.png', depth))
    assert out[0, 0, 0] == 0 and out[1, 0, 0] == 255 and out[0, 1, 0] == 127
    colour16 = (RGB[..., ::-1].astype(np.uint16) << 8) | 0x55
    np.testing.assert_array_equal(_decode('bgr16; png compressed bgr16',
                                          _encode('.png', colour16)), RGB)


def _depth_header(fmt: int = 0, a: float = 0.0, b: float = 0.0) -> bytes:
    return struct.pack('<iff', fmt, a, b)


def test_compressed_depth_png_is_shown_as_grey_over_its_valid_range():
    depth = np.array([[0, 1000], [2000, 3000]], np.uint16)  # 0 = no reading
    data = _depth_header() + _encode('.png', depth)
    for fmt in ('16UC1; compressedDepth', '16UC1; compressedDepth png'):
        out = _decode(fmt, data)
        assert out.shape == (2, 2, 3)
        assert list(out[..., 0].ravel()) == [0, 0, 127, 255]
    # 32FC1: quantised inverse depth q = A / depth + B
    a, b = 100.0, 10.0
    metres = np.array([[0.0, 1.0], [2.0, 4.0]])
    q = np.where(metres > 0, a / np.where(metres > 0, metres, 1) + b, 0).astype(np.uint16)
    out = _decode('32FC1; compressedDepth png', _depth_header(0, a, b) + _encode('.png', q))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 0 and out[1, 1, 0] == 255
    assert 80 <= out[1, 0, 0] <= 90  # 2 m of 1..4 m
    assert _reason('16UC1; compressedDepth rvl', data) == 'unsupported_format'
    assert _reason('16UC1; compressedDepth', _depth_header()) == 'decode_failed'


@pytest.mark.parametrize('fmt', [
    'h264', 'theora', 'tiff compressed', 'rgb8; jpeg compressed yuv', 'rgb8; h264 compressed rgb8',
    'foo; bar', 'rgb8; compressedDepth'])
def test_unknown_formats_are_refused_with_the_list(fmt):
    with pytest.raises(FrameError) as info:
        parse_format(fmt)
    assert info.value.reason == 'unsupported_format'
    assert 'supported' in str(info.value)  # says what is


def test_a_named_container_must_match_the_data():
    png = _encode('.png', RGB)
    assert _reason('jpeg', png) == 'format_mismatch'
    assert _reason('bgr8; jpeg compressed bgr8', png) == 'format_mismatch'
    assert parse_format('JPEG').container == 'JPEG' and parse_format('').container == ''


@pytest.mark.parametrize('container', CONTAINERS)
def test_every_accepted_container_decodes(container):
    buf = io.BytesIO()
    options = {'WEBP': {'lossless': True}, 'JPEG': {'quality': 100, 'subsampling': 0}}
    Image.fromarray(RGB).save(buf, format=container, **options.get(container, {}))
    out = _decode(container.lower(), buf.getvalue())
    if container == 'JPEG':
        assert np.abs(out.astype(int) - RGB).mean() < 8
    else:
        np.testing.assert_array_equal(out, RGB)


def test_garbage_empty_and_oversized_data_are_refused():
    png = _encode('.png', RGB)
    assert _reason('png', b'') == 'empty'
    assert _reason('png', b'not an image at all') == 'decode_failed'
    assert _reason('png', png[:40]) == 'decode_failed'
    assert _reason('jpeg', b'\xff\xd8 garbage') == 'decode_failed'
    assert _reason('tiff', bytes(range(256)) * 10) == 'decode_failed'
    assert _reason('png', bytes(2000), max_bytes=1000) == 'too_large'
    np.testing.assert_array_equal(_decode('png', list(png)), RGB[..., ::-1])


# ----- decompression bombs: refused from the header, memory bounded ------------------------------
def _jpeg_with_late_sof(width: int, height: int) -> bytes:
    """A real JPEG whose SOF comes after two 64 KiB APP segments and declares width x height."""
    jpeg = bytearray(_encode('.jpg', np.full((16, 16, 3), 128, np.uint8)))
    sof = jpeg.index(b'\xff\xc0')
    jpeg[sof + 5:sof + 9] = struct.pack('>HH', height, width)
    app = b'\xff\xe1' + struct.pack('>H', 65535) + bytes(65533)
    return bytes(jpeg[:2] + app + app + jpeg[2:])


def _jpeg_with_two_sofs(width: int, height: int) -> bytes:
    """A real 16x16 JPEG with a second SOF, declaring width x height, after its own."""
    jpeg = _encode('.jpg', np.full((16, 16, 3), 128, np.uint8))
    sof = jpeg.index(b'\xff\xc0')
    length = struct.unpack('>H', jpeg[sof + 2:sof + 4])[0]
    second = bytearray(jpeg[sof:sof + 2 + length])
    second[5:9] = struct.pack('>HH', height, width)
    end = sof + 2 + length
    return jpeg[:end] + bytes(second) + jpeg[end:]


def _png_bomb(side: int) -> bytes:
    """A real 1-bit PNG of side x side zeros: small on the wire, side**2 * 3 bytes as BGR."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack('>I', len(body)) + kind + body
                + struct.pack('>I', zlib.crc32(kind + body)))
    packer = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)
    idat = b''.join(packer.compress(row * 1000) for _ in range(side // 1000))
    idat += packer.compress(row * (side % 1000)) + packer.flush()
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', side, side, 1, 0, 0,
                                                               0, 0))
            + chunk(b'IDAT', idat) + chunk(b'IEND', b''))


def _bmp_header(width: int, height: int) -> bytes:
    """A 54-byte BMP header (24-bit, uncompressed) declaring width x height, no pixels."""
    return (b'BM' + struct.pack('<IHHI', 54, 0, 0, 54)
            + struct.pack('<IiiHHIIiiII', 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0))


def _tiff_header(width: int, height: int) -> bytes:
    """A little-endian TIFF (8-bit grey, one strip) declaring width x height, 16 data bytes."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 8 + 2 + 12 * 8 + 4), (277, 3, 1), (278, 4, height), (279, 4, 16)]
    ifd = struct.pack('<H', len(entries)) + b''.join(
        struct.pack('<HHI', tag, kind, 1) + (struct.pack('<HH', value, 0) if kind == 3
                                            else struct.pack('<I', value))
        for tag, kind, value in entries) + struct.pack('<I', 0)
    # the strip offset above counts one entry short of the 9: put the data after the IFD
    body = b'II*\x00' + struct.pack('<I', 8) + ifd
    return body + bytes(16)


def _webp_declaring(side: int) -> bytes:
    """A real lossy WebP whose VP8 frame header is patched to declare side x side (<= 16383)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(buf, format='WEBP', quality=50)
    data = bytearray(buf.getvalue())
    start = data.index(b'\x9d\x01\x2a')
    data[start + 3:start + 7] = struct.pack('<HH', side, side)
    return bytes(data)


BOMBS = {
    'jpeg_sof_after_64k_app': ('jpeg', lambda: _jpeg_with_late_sof(30000, 30000)),
    'jpeg_second_sof': ('jpeg', lambda: _jpeg_with_two_sofs(30000, 30000)),
    'png_1bit_30000': ('png', lambda: _png_bomb(30000)),
    'bmp_50000': ('bmp', lambda: _bmp_header(50000, 50000)),
    'bmp_2000000x1': ('bmp', lambda: _bmp_header(2_000_000, 1)),
    'tiff_100000': ('tiff', lambda: _tiff_header(100000, 100000)),
    'webp_16383': ('webp', lambda: _webp_declaring(16383)),
    'ppm_100000': ('ppm', lambda: b'P6 100000 100000 255\n' + bytes(64)),
}


@pytest.fixture(scope='module')
def bombs(tmp_path_factory):
    folder = tmp_path_factory.mktemp('bombs')
    for name, (fmt, make) in BOMBS.items():
        (folder / f'{name}.{fmt}').write_bytes(make())
    return folder


def test_bombs_are_refused_and_the_issue_inputs_are_what_they_claim(bombs, monkeypatch):
    jpeg = (bombs / 'jpeg_sof_after_64k_app.jpeg').read_bytes()
    assert jpeg.index(b'\xff\xc0') > 2 * 65536  # the SOF really lies beyond 64 KiB
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', None)  # our own max_pixels must refuse them
    for name, size in (('jpeg_sof_after_64k_app.jpeg', (30000, 30000)),
                       ('png_1bit_30000.png', (30000, 30000)), ('webp_16383.webp', (16383, 16383)),
                       ('tiff_100000.tiff', (100000, 100000))):
        with Image.open(bombs / name) as image:
            assert image.size == size, name
    for path in sorted(bombs.iterdir()):
        fmt = path.suffix[1:]
        reason = _reason(fmt, path.read_bytes())
        # 2,000,000 x 1 is under max_pixels: read, found truncated; every other one declares
        # more than max_pixels and is refused from its header.
        expected = 'decode_failed' if path.stem == 'bmp_2000000x1' else 'too_large'
        if path.stem == 'jpeg_second_sof':  # sized by one SOF, refused by the other
            expected = reason if reason in ('too_large', 'decode_failed') else 'too_large'
        assert reason == expected, (path.name, reason)
        assert _reason('', path.read_bytes()) == expected  # sniffed: the same


def test_refusing_bombs_keeps_memory_bounded(bombs):
    """Peak RSS of a fresh process grows by less than 64 MB over every bomb (one would be GBs)."""
    code = f"""
import resource, sys
from pathlib import Path
import numpy as np, cv2
from cl_core_ros.core.compressed_image import compressed_to_rgb
from cl_core_ros.core.raw_image import FrameError
ok, png = cv2.imencode('.png', np.zeros((64, 64, 3), np.uint8))
compressed_to_rgb('png', png.tobytes(), max_pixels=40_000_000, max_bytes=10**8)  # warm up
files = [(p.suffix[1:], p.read_bytes()) for p in sorted(Path({str(bombs)!r}).iterdir())]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for fmt, data in files:
    try:
        compressed_to_rgb(fmt, data, max_pixels=40_000_000, max_bytes=10**8)
        sys.exit('decoded ' + fmt)
    except FrameError as exc:
        print(fmt, exc.reason)
print('growth_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    growth_kb = int(done.stdout.split('growth_kb')[1])
    assert growth_kb < 64 * 1024, done.stdout


@pytest.mark.parametrize('ext', ['.ras', '.hdr', '.pfm', '.pam'])
def test_other_formats_opencv_reads_are_refused_unsized(ext):
    """Containers outside CONTAINERS are never handed to a decoder, whatever they declare."""
    image = np.full((8, 8, 3), 100, np.float32 if ext in ('.hdr', '.pfm') else np.uint8)
    data = _encode(ext, image)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    assert _reason('', data) == 'decode_failed'
    assert _reason(ext[1:], data) == 'unsupported_format'
