"""Raw images -> RGB: every supported encoding with known pixel values, every bad input refused."""

import numpy as np
import pytest

from cl_core_ros.core.raw_image import (
    ENCODINGS,
    FrameError,
    raw_to_rgb,
    SUPPORTED_ENCODINGS,
)

RGB = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
MAX = 10_000_000
# ITU-R BT.601 limited range, as camera drivers emit: (Y, U, V) of pure colours and greys.
YUV = {'red': (81, 90, 240), 'blue': (41, 240, 110), 'black': (16, 128, 128),
       'white': (235, 128, 128)}
COLOUR = {'red': (255, 0, 0), 'blue': (0, 0, 255), 'black': (0, 0, 0), 'white': (255, 255, 255)}


def _decode(arr: np.ndarray, encoding: str, *, bigendian=False, step=None, **kw) -> np.ndarray:
    h, w = arr.shape[:2]
    data = arr.astype(arr.dtype.newbyteorder('>' if bigendian else '<')).tobytes()
    return raw_to_rgb(encoding, h, w, step or len(data) // h, data, big_endian=bigendian,
                      max_pixels=kw.get('max_pixels', MAX))


def _alpha(arr):
    return np.dstack([arr, np.full(arr.shape[:2], 7, arr.dtype)])


@pytest.mark.parametrize(('encoding', 'arr'), [
    ('rgb8', RGB), ('bgr8', RGB[:, :, ::-1]), ('rgba8', _alpha(RGB)),
    ('bgra8', _alpha(RGB[:, :, ::-1])),
    ('8UC3', RGB[:, :, ::-1]),  # OpenCV order: what cv2_to_imgmsg(frame) sends
    ('8UC4', _alpha(RGB[:, :, ::-1])),
    ('rgb16', RGB.astype(np.uint16) << 8),
    ('bgr16', (RGB[:, :, ::-1].astype(np.uint16) << 8) | 0x7F),
    ('rgba16', _alpha(RGB.astype(np.uint16) << 8)),
    ('bgra16', _alpha(RGB[:, :, ::-1].astype(np.uint16) << 8)),
    ('16UC3', RGB[:, :, ::-1].astype(np.uint16) << 8),
    ('16UC4', _alpha(RGB[:, :, ::-1].astype(np.uint16) << 8)),
])
@pytest.mark.parametrize('bigendian', [False, True])
def test_colour_encodings_give_the_same_rgb(encoding, arr, bigendian):
    out = _decode(np.ascontiguousarray(arr), encoding, bigendian=bigendian)
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize('encoding', ['mono8', '8UC1'])
def test_mono8_and_8uc1_are_grey(encoding):
    out = _decode(RGB[:, :, 0].copy(), encoding)
    np.testing.assert_array_equal(out, np.repeat(RGB[:, :, :1], 3, axis=2))


@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
@pytest.mark.parametrize('bigendian', [False, True])
def test_sixteen_bit_mono_and_depth_use_their_range_in_either_byte_order(encoding, bigendian):
    depth = np.array([[1000, 2000], [3000, 1000]], np.uint16)
    out = _decode(depth, encoding, bigendian=bigendian)
    assert out[0, 0, 0] == 0 and out[1, 0, 0] == 255 and out[0, 1, 0] == 127
    assert (out[..., 0] == out[..., 2]).all()


def test_eight_bit_data_flagged_big_endian_is_read_as_is():
    # Byte order means nothing for 8-bit samples (cv_bridge under numpy 2 raised here).
    for encoding, arr in (('rgb8', RGB), ('bgr8', RGB[:, :, ::-1]), ('mono8', RGB[:, :, 0])):
        out = _decode(np.ascontiguousarray(arr), encoding, bigendian=True)
        expected = RGB if arr.ndim == 3 else np.repeat(RGB[:, :, :1], 3, axis=2)
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
@pytest.mark.parametrize('bigendian', [False, True])
def test_bayer_patterns_demosaic_a_uniform_colour(pattern, bigendian):
    colour = {'r': 200, 'g': 100, 'b': 30}
    mosaic = np.zeros((8, 8), np.uint8)
    for dy in (0, 1):
        for dx in (0, 1):
            mosaic[dy::2, dx::2] = colour[pattern[2 * dy + dx]]
    assert tuple(_decode(mosaic, f'bayer_{pattern}8')[4, 4]) == (200, 100, 30)
    mosaic16 = mosaic.astype(np.uint16) << 8
    out16 = _decode(mosaic16, f'bayer_{pattern}16', bigendian=bigendian)
    assert tuple(out16[4, 4]) == (200, 100, 30)


def _close(pixel, colour, tol=3):
    return all(abs(int(a) - b) <= tol for a, b in zip(pixel, COLOUR[colour]))


def _yuv422(pairs: list[tuple[str, str]], order: str) -> np.ndarray:
    """One row of pixel pairs, each pair (luma colour of both pixels, chroma colour)."""
    row = []
    for colour0, colour1 in pairs:
        y0, u, v = YUV[colour0]
        y1 = YUV[colour1][0]
        row += [u, y0, v, y1] if order == 'uyvy' else [y0, u, y1, v]
    return np.array([row, row], np.uint8)  # two rows, 2 bytes per pixel


@pytest.mark.parametrize(('encoding', 'order'), [('yuv422', 'uyvy'), ('uyvy', 'uyvy'),
                                                 ('yuv422_yuy2', 'yuyv'), ('yuyv', 'yuyv')])
def test_yuv422_variants_give_known_colours_at_known_places(encoding, order):
    packed = _yuv422([('red', 'red'), ('blue', 'blue'), ('black', 'white')], order)
    out = raw_to_rgb(encoding, 2, 6, 12, packed.tobytes(), max_pixels=MAX)
    assert out.shape == (2, 6, 3)
    for x, colour in enumerate(['red', 'red', 'blue', 'blue', 'black', 'white']):
        assert _close(out[1, x], colour), (x, out[1, x], colour)


def _nv(colours: list[list[str]], order: str) -> np.ndarray:
    """Y plane, then the chroma plane of ``order`` for an image of uniform 2x2 blocks."""
    blocks = np.array([[YUV[c] for c in row] for row in colours], np.uint8)
    full = blocks.repeat(2, axis=0).repeat(2, axis=1)  # (h, w, 3) Y U V
    h, w = full.shape[:2]
    luma = full[:, :, 0]
    if order == 'nv24':
        chroma = full[:, :, 1:].reshape(2 * h, w)  # rows of 2*w bytes, as 2 rows of step
    else:
        sub = blocks[:, :, 1:] if order == 'nv12' else blocks[:, :, 2:0:-1]
        chroma = sub.reshape(h // 2, w)
    return np.vstack([luma, chroma])


@pytest.mark.parametrize('encoding', ['nv12', 'nv21', 'nv24'])
def test_semi_planar_yuv_gives_known_colours_at_known_places(encoding):
    layout = [['red', 'blue', 'white'], ['black', 'red', 'blue']]
    planes = _nv(layout, encoding)
    out = raw_to_rgb(encoding, 4, 6, 6, planes.tobytes(), max_pixels=MAX)
    assert out.shape == (4, 6, 3)
    for by, row in enumerate(layout):
        for bx, colour in enumerate(row):
            for dy in (0, 1):
                for dx in (0, 1):
                    pixel = out[2 * by + dy, 2 * bx + dx]
                    assert _close(pixel, colour), (encoding, by, bx, pixel, colour)


def test_padded_rows_are_cropped_for_every_layout():
    padded = np.zeros((6, 30), np.uint8)
    padded[:, :24] = RGB.reshape(6, 24)
    np.testing.assert_array_equal(raw_to_rgb('rgb8', 6, 8, 30, padded.tobytes(), max_pixels=MAX),
                                  RGB)
    packed = _yuv422([('red', 'red'), ('blue', 'blue')], 'yuyv')
    wide = np.zeros((2, 12), np.uint8)
    wide[:, :8] = packed
    out = raw_to_rgb('yuyv', 2, 4, 12, wide.tobytes(), max_pixels=MAX)
    assert _close(out[0, 0], 'red') and _close(out[0, 3], 'blue')
    planes = _nv([['red', 'blue']], 'nv21')
    wide = np.zeros((3, 8), np.uint8)
    wide[:, :4] = planes
    out = raw_to_rgb('nv21', 2, 4, 8, wide.tobytes(), max_pixels=MAX)
    assert _close(out[1, 0], 'red') and _close(out[1, 3], 'blue')


def test_every_supported_encoding_is_tested_here_and_documented():
    tested = {'rgb8', 'bgr8', 'rgba8', 'bgra8', '8UC3', '8UC4', 'rgb16', 'bgr16', 'rgba16',
              'bgra16', '16UC3', '16UC4', 'mono8', '8UC1', 'mono16', '16UC1', 'yuv422', 'uyvy',
              'yuv422_yuy2', 'yuyv', 'nv12', 'nv21', 'nv24'}
    tested |= {f'bayer_{p}{d}' for p in ('rggb', 'bggr', 'gbrg', 'grbg') for d in (8, 16)}
    assert set(SUPPORTED_ENCODINGS) == tested
    assert all(ENCODINGS[e].note or e in ('rgb8', 'bgr8', 'mono8') for e in SUPPORTED_ENCODINGS)


@pytest.mark.parametrize(('args', 'reason'), [
    (('rgb8', 6, 8, 10, bytes(60)), 'bad_step'),
    (('rgb8', 6, 8, 24, bytes(100)), 'truncated'),
    (('rgb8', 0, 8, 24, b''), 'empty'),
    (('mono8', 6, 0, 0, b''), 'empty'),
    (('rgb8', 4320, 7680, 7680 * 3, b''), 'too_large'),
    (('yuyv', 2, 3, 6, bytes(12)), 'bad_size'),
    (('nv21', 3, 4, 4, bytes(24)), 'bad_size'),
    (('nv21', 2, 4, 4, bytes(11)), 'truncated'),
    (('nv24', 2, 4, 4, bytes(23)), 'truncated'),
    (('', 6, 8, 24, bytes(144)), 'unsupported_encoding'),
    (('32FC1', 6, 8, 32, bytes(192)), 'unsupported_encoding'),
    (('16SC1', 6, 8, 16, bytes(96)), 'unsupported_encoding'),
    (('weird_encoding', 6, 8, 24, bytes(144)), 'unsupported_encoding'),
])
def test_malformed_images_raise_frame_error_with_a_reason(args, reason):
    with pytest.raises(FrameError) as info:
        raw_to_rgb(*args, max_pixels=8_000_000)
    assert info.value.reason == reason
    if reason == 'unsupported_encoding':
        assert 'yuv422_yuy2' in str(info.value)  # the list of what is supported


def test_data_of_every_container_type_is_read():
    import array
    data = RGB.tobytes()
    for wrapped in (data, bytearray(data), array.array('B', data), memoryview(data),
                    np.frombuffer(data, np.uint8), list(data)):
        np.testing.assert_array_equal(raw_to_rgb('rgb8', 6, 8, 24, wrapped, max_pixels=MAX), RGB)


def test_the_readme_table_lists_exactly_the_supported_encodings():
    from pathlib import Path
    import re
    readme = (Path(__file__).resolve().parents[2] / 'README.md').read_text()
    table = readme.split('<!-- encodings')[1].split('<!-- /encodings -->')[0]
    names = set()
    for line in table.splitlines():
        if line.startswith('| `'):
            names |= set(re.findall(r'`([^`]+)`', line.split('|')[1]))
    assert names == set(SUPPORTED_ENCODINGS)
