"""Image preprocessing with cv2/numpy: crop, resize, normalise to the backbone's expectations."""

from dataclasses import dataclass

import cv2
import numpy as np
import torch

# Normalisation per backbone: (mean, std) applied to RGB values in 0..255.
# EfficientNet-Lite weights ported from TensorFlow expect (x - 127) / 128. MobileNetV1 weights in
# the torch ImageNet convention expect ImageNet mean/std on [0, 1].
NORMALISATION = {
    'efficientnet_lite0': ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0)),
    'mobilenet_v1': ((0.485 * 255, 0.456 * 255, 0.406 * 255),
                     (0.229 * 255, 0.224 * 255, 0.225 * 255)),
}


@dataclass(frozen=True)
class Region:
    """A crop rectangle in pixels: top-left corner and size."""

    x: int
    y: int
    width: int
    height: int


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as an HxWx3 uint8 RGB array (gray and RGBA accepted)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f'image: expected uint8, got {image.dtype}')
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f'image: expected HxW or HxWx3 uint8, got shape {image.shape}')


def centre_square(height: int, width: int) -> Region:
    """Return the largest centred square of an image of the given size."""
    side = min(height, width)
    return Region((width - side) // 2, (height - side) // 2, side, side)


def crop_resize(image: np.ndarray, size: int, region: Region | None = None) -> np.ndarray:
    """Crop ``region`` (default: centre square) of an RGB image and resize it to size x size."""
    rgb = as_rgb(image)
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise ValueError('image: empty')
    r = region or centre_square(h, w)
    x0, y0 = max(r.x, 0), max(r.y, 0)
    x1, y1 = min(r.x + r.width, w), min(r.y + r.height, h)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f'region {r} lies outside the {w}x{h} image')
    crop = rgb[y0:y1, x0:x1]
    if crop.shape[0] == size and crop.shape[1] == size:
        return np.ascontiguousarray(crop)
    shrinking = crop.shape[0] > size or crop.shape[1] > size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)


def normalise(rgb: np.ndarray, backbone: str) -> torch.Tensor:
    """Turn HxWx3 uint8 RGB (or NxHxWx3) into normalised float tensors (3xHxW / Nx3xHxW)."""
    mean, std = NORMALISATION[backbone]
    x = torch.from_numpy(np.ascontiguousarray(rgb)).float()
    x = (x - torch.tensor(mean)) / torch.tensor(std)
    return x.movedim(-1, -3).contiguous()


def preprocess(image: np.ndarray, size: int, backbone: str,
               region: Region | None = None) -> torch.Tensor:
    """Crop, resize and normalise one image into a 3 x size x size float tensor."""
    return normalise(crop_resize(image, size, region), backbone)


def preprocess_batch(images, size: int, backbone: str) -> torch.Tensor:
    """Preprocess a sequence of images (or an NxHxWx3 array) into an Nx3xSxS tensor."""
    frames = [crop_resize(img, size) for img in images]
    if not frames:
        return torch.zeros(0, 3, size, size)
    return normalise(np.stack(frames), backbone)
