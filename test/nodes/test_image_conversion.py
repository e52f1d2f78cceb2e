"""sensor_msgs messages -> RGB frames through the nodes' adapters (rclpy message objects).

Every encoding and format is tested on the shared decoders in test/core/test_raw_image.py and
test/core/test_compressed_image.py; here the rclpy messages go through the same paths.
"""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from cl_core_ros.nodes.image_conversion import (
    compressed_to_rgb,
    FrameError,
    image_to_rgb,
    rgb_to_image,
    SUPPORTED_ENCODINGS,
)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
MAX = 10_000_000


def _msg(arr: np.ndarray, encoding: str, step: int | None = None, bigendian=False) -> Image:
    h, w = arr.shape[:2]
    data = arr.astype(arr.dtype.newbyteorder('>' if bigendian else '<')).tobytes()
    row = len(data) // h
    return Image(height=h, width=w, encoding=encoding, step=step or row,
                 is_bigendian=int(bigendian), data=data)


@pytest.mark.parametrize(('encoding', 'arr', 'expected'), [
    ('rgb8', RGB, RGB),
    ('bgr8', RGB[:, :, ::-1], RGB),
    ('rgba8', np.dstack([RGB, np.full((6, 8), 7, np.uint8)]), RGB),
    ('bgra8', np.dstack([RGB[:, :, ::-1], np.zeros((6, 8), np.uint8)]), RGB),
    ('mono8', RGB[:, :, 0], np.repeat(RGB[:, :, :1], 3, axis=2)),
    ('rgb16', RGB.astype(np.uint16) << 8, RGB),
    ('bgr16', (RGB[:, :, ::-1].astype(np.uint16) << 8) | 0x7F, RGB),
])
def test_supported_encodings_give_the_same_rgb(encoding, arr, expected):
    out = image_to_rgb(_msg(np.ascontiguousarray(arr), encoding), max_pixels=MAX)
    assert out.dtype == np.uint8 and out.shape == (6, 8, 3)
    np.testing.assert_array_equal(out, expected)


def test_sixteen_bit_mono_and_depth_use_the_range_and_endianness():
    depth = np.array([[1000, 2000], [3000, 1000]], np.uint16)
    for big in (False, True):
        out = image_to_rgb(_msg(depth, '16UC1', bigendian=big), max_pixels=MAX)
        assert out[0, 0, 0] == 0 and out[1, 0, 0] == 255 and out[0, 1, 0] == 127


@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer_patterns_demosaic_a_uniform_colour(pattern):
    colour = {'r': 200, 'g': 100, 'b': 30}
    mosaic = np.zeros((8, 8), np.uint8)
    for dy in (0, 1):
        for dx in (0, 1):
            mosaic[dy::2, dx::2] = colour[pattern[2 * dy + dx]]
    out = image_to_rgb(_msg(mosaic, f'bayer_{pattern}8'), max_pixels=MAX)
    assert tuple(out[4, 4]) == (200, 100, 30)
    mosaic16 = mosaic.astype(np.uint16) << 8
    out16 = image_to_rgb(_msg(mosaic16, f'bayer_{pattern}16'), max_pixels=MAX)
    assert tuple(out16[4, 4]) == (200, 100, 30)


def test_padded_rows_are_cropped():
    padded = np.zeros((6, 30), np.uint8)
    padded[:, :24] = RGB.reshape(6, 24)
    msg = Image(height=6, width=8, encoding='rgb8', step=30, data=padded.tobytes())
    np.testing.assert_array_equal(image_to_rgb(msg, max_pixels=MAX), RGB)


@pytest.mark.parametrize(('msg', 'reason'), [
    (Image(height=6, width=8, encoding='rgb8', step=10, data=bytes(60)), 'bad_step'),
    (Image(height=6, width=8, encoding='rgb8', step=24, data=bytes(100)), 'truncated'),
    (Image(height=0, width=8, encoding='rgb8', step=24, data=b''), 'empty'),
    (Image(height=6, width=0, encoding='mono8', step=0, data=b''), 'empty'),
    (Image(height=4320, width=7680, encoding='rgb8', step=7680 * 3, data=b''), 'too_large'),
    (Image(height=6, width=8, encoding='yuv422_yuy2', step=12, data=bytes(96)), 'bad_step'),
    (Image(height=6, width=8, encoding='16SC1', step=16, data=bytes(96)),
     'unsupported_encoding'),
    (Image(height=6, width=8, encoding='', step=24, data=bytes(144)), 'unsupported_encoding'),
    (Image(height=6, width=8, encoding='32FC1', step=32, data=bytes(192)),
     'unsupported_encoding'),
])
def test_malformed_images_raise_frame_error_with_a_reason(msg, reason):
    with pytest.raises(FrameError) as info:
        image_to_rgb(msg, max_pixels=8_000_000)
    assert info.value.reason == reason


def test_compressed_png_and_jpeg_decode_and_garbage_is_refused():
    ok, png = cv2.imencode('.png', cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    out = compressed_to_rgb(CompressedImage(format='png', data=png.tobytes()),
                            max_pixels=MAX, max_bytes=MAX)
    np.testing.assert_array_equal(out, RGB)
    ok, jpg = cv2.imencode('.jpg', np.full((16, 16, 3), 128, np.uint8))
    assert compressed_to_rgb(CompressedImage(format='jpeg', data=jpg.tobytes()),
                             max_pixels=MAX, max_bytes=MAX).shape == (16, 16, 3)
    for data, reason in ((b'', 'empty'), (b'not an image at all', 'decode_failed'),
                         (png.tobytes()[:40], 'decode_failed'), (bytes(2000), 'too_large')):
        with pytest.raises(FrameError) as info:
            compressed_to_rgb(CompressedImage(format='png', data=data), max_pixels=MAX,
                              max_bytes=1000)
        assert info.value.reason == reason


def test_compressed_decompression_bomb_is_refused_from_its_header():
    ok, png = cv2.imencode('.png', np.zeros((3000, 3000), np.uint8))
    with pytest.raises(FrameError) as info:
        compressed_to_rgb(CompressedImage(format='png', data=png.tobytes()), max_pixels=1000,
                          max_bytes=MAX)
    assert info.value.reason == 'too_large'


def test_compressed_format_string_of_the_message_is_honoured():
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    ok, jpg = cv2.imencode('.jpg', red)  # an rgb8 buffer handed to the encoder
    out = compressed_to_rgb(CompressedImage(format='rgb8; jpeg compressed rgb8',
                                            data=jpg.tobytes()), max_pixels=MAX, max_bytes=MAX)
    assert out[8, 8, 0] >= 250 and out[8, 8, 2] <= 5


def test_yuyv_and_8uc3_messages_convert():
    yuyv = np.array([[81, 90, 81, 240]] * 2, np.uint8)  # two red pixels per row
    out = image_to_rgb(Image(height=2, width=2, encoding='yuv422_yuy2', step=4,
                             data=yuyv.tobytes()), max_pixels=MAX)
    assert out[0, 0, 0] >= 250 and out[0, 0, 2] <= 3
    msg = Image(height=6, width=8, encoding='8UC3', step=24,
                data=np.ascontiguousarray(RGB[:, :, ::-1]).tobytes())
    np.testing.assert_array_equal(image_to_rgb(msg, max_pixels=MAX), RGB)


def test_rgb_round_trip_keeps_header_and_pixels():
    from std_msgs.msg import Header
    msg = rgb_to_image(RGB, Header(frame_id='cam'))
    assert msg.header.frame_id == 'cam' and msg.encoding == 'rgb8'
    np.testing.assert_array_equal(image_to_rgb(msg, max_pixels=MAX), RGB)
    assert 'bayer_rggb8' in SUPPORTED_ENCODINGS and 'mono16' in SUPPORTED_ENCODINGS
