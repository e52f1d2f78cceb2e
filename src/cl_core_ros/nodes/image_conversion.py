"""sensor_msgs images <-> RGB uint8 arrays for the nodes.

Thin adapters over the ROS-free decoders that the bag reader uses too:
:mod:`cl_core_ros.core.raw_image` (every encoding of :data:`SUPPORTED_ENCODINGS`) and
:mod:`cl_core_ros.core.compressed_image` (image_transport ``format`` strings, header-first size
checks). Every failure raises :class:`FrameError` with a short ``reason``.
"""

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from cl_core_ros.core import compressed_image
from cl_core_ros.core.raw_image import FrameError, image_fields_to_rgb, SUPPORTED_ENCODINGS

__all__ = ['compressed_to_rgb', 'FrameError', 'image_to_rgb', 'rgb_to_image',
           'SUPPORTED_ENCODINGS']


def image_to_rgb(msg: Image, *, max_pixels: int) -> np.ndarray:
    """Return ``msg`` as an (height, width, 3) uint8 RGB array or raise :class:`FrameError`."""
    return image_fields_to_rgb(msg, max_pixels=max_pixels)


def compressed_to_rgb(msg: CompressedImage, *, max_pixels: int, max_bytes: int) -> np.ndarray:
    """Decode a CompressedImage to (height, width, 3) uint8 RGB or raise :class:`FrameError`."""
    return compressed_image.compressed_to_rgb(msg.format, msg.data, max_pixels=max_pixels,
                                              max_bytes=max_bytes)


def rgb_to_image(rgb: np.ndarray, header) -> Image:
    """Build an rgb8 Image message with ``header`` from an (height, width, 3) uint8 array."""
    h, w = rgb.shape[:2]
    return Image(header=header, height=h, width=w, encoding='rgb8', is_bigendian=0,
                 step=w * 3, data=np.ascontiguousarray(rgb, dtype=np.uint8).tobytes())
