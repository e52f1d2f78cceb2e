"""Real photos bundled with scikit-image, turned into "objects" filmed in "sessions".

Each photo is an object. A session is a short, smooth "video" of the object pasted on a
background: the session fixes scale, rotation, position, brightness, contrast, colour cast and
background (plain colour, gradient or smooth texture); frames then drift slowly around that pose
with a small affine jitter, like a hand-held object filmed at a few frames per second. Different
sessions of one object therefore differ the way CORe50 sessions do (NIC: new instances of known
classes), and everything is deterministic given (object, session, seed).

Only images shipped inside the scikit-image wheel are used: nothing is ever downloaded.
"""

from collections.abc import Callable
from dataclasses import dataclass
import functools
import math
import zlib

import cv2
import numpy as np

_MAX_SIDE = 256


def _loaders() -> dict[str, Callable[[], np.ndarray]]:
    from skimage import data

    def first(fn):
        return lambda: fn()[0]

    def binary(fn):
        return lambda: fn().astype(np.uint8) * 255

    return {
        'astronaut': data.astronaut, 'chelsea': data.chelsea, 'coffee': data.coffee,
        'rocket': data.rocket, 'motorcycle': first(data.stereo_motorcycle),
        'retina': data.retina, 'immunohistochemistry': data.immunohistochemistry,
        'hubble_deep_field': data.hubble_deep_field, 'camera': data.camera,
        'coins': data.coins, 'moon': data.moon, 'horse': binary(data.horse),
        'clock': data.clock, 'brick': data.brick, 'grass': data.grass, 'gravel': data.gravel,
        'page': data.page, 'text': data.text, 'colorwheel': data.colorwheel, 'logo': data.logo,
        'cell': data.cell, 'microaneurysms': data.microaneurysms,
    }


OBJECT_NAMES: tuple[str, ...] = (
    'chelsea', 'coffee', 'rocket', 'motorcycle', 'astronaut', 'retina', 'immunohistochemistry',
    'hubble_deep_field', 'camera', 'coins', 'moon', 'horse', 'clock', 'brick', 'grass', 'gravel',
    'page', 'text', 'colorwheel', 'logo', 'cell', 'microaneurysms',
)


def load_photo(name: str, max_side: int | None = _MAX_SIDE) -> np.ndarray:
    """Return photo ``name`` as RGB uint8, longest side at most ``max_side`` (read-only).

    ``max_side=None`` keeps the photo's own size.
    """
    return _load_photo(name, max_side)


@functools.cache
def _load_photo(name: str, max_side: int | None) -> np.ndarray:
    loaders = _loaders()
    if name not in loaders:
        raise ValueError(f'unknown photo {name!r}; choose from {OBJECT_NAMES}')
    image = np.asarray(loaders[name]())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3].astype(np.uint8))
    scale = max_side / max(image.shape[:2]) if max_side else 1.0
    if scale < 1:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    image.setflags(write=False)
    return image


@dataclass(frozen=True)
class SessionStyle:
    """How one session films an object (all values drawn from a seeded generator)."""

    scale: float          # object size relative to the frame
    angle: float          # degrees
    centre: tuple[float, float]  # object centre, fraction of the frame
    brightness: float     # additive, in 0..255 units
    contrast: float       # multiplicative
    tint: tuple[float, float, float]  # per-channel gain (colour cast)
    background: str       # 'plain' | 'gradient' | 'texture'
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    drift: tuple[float, float, float, float]  # amplitude: x, y (fraction), angle, scale
    phase: float
    view: tuple[float, float, float, float]  # visible part of the photo: x0, y0, x1, y1 fractions


def _rng(*parts) -> np.random.Generator:
    key = '/'.join(str(p) for p in parts).encode()
    return np.random.default_rng(zlib.crc32(key))


def session_style(name: str, session: int, seed: int = 0) -> SessionStyle:
    """Return the deterministic style of ``session`` for object ``name``."""
    rng = _rng('style', name, session, seed)
    colours = tuple(tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(2))
    return SessionStyle(
        scale=float(rng.uniform(0.6, 0.95)),
        angle=float(rng.uniform(-30, 30)),
        centre=(float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6))),
        brightness=float(rng.uniform(-35, 35)),
        contrast=float(rng.uniform(0.7, 1.25)),
        tint=tuple(float(t) for t in rng.uniform(0.85, 1.15, 3)),
        background=str(rng.choice(['plain', 'gradient', 'texture'])),
        colours=colours,
        drift=(float(rng.uniform(0.01, 0.05)), float(rng.uniform(0.01, 0.05)),
               float(rng.uniform(2, 8)), float(rng.uniform(0.02, 0.08))),
        phase=float(rng.uniform(0, 2 * math.pi)),
        view=_view(rng),
    )


def _view(rng: np.random.Generator) -> tuple[float, float, float, float]:
    width, height = rng.uniform(0.65, 1.0, 2)
    x0, y0 = rng.uniform(0, 1 - width), rng.uniform(0, 1 - height)
    return float(x0), float(y0), float(x0 + width), float(y0 + height)


def _background(style: SessionStyle, size: int, rng: np.random.Generator) -> np.ndarray:
    a = np.array(style.colours[0], np.float32)
    b = np.array(style.colours[1], np.float32)
    if style.background == 'plain':
        return np.broadcast_to(a, (size, size, 3)).copy()
    if style.background == 'gradient':
        t = np.linspace(0, 1, size, dtype=np.float32)[None, :, None]
        t = np.broadcast_to(t, (size, size, 1))
        if rng.random() < 0.5:
            t = t.transpose(1, 0, 2)
        return a * (1 - t) + b * t
    coarse = rng.random((6, 6, 1)).astype(np.float32)
    t = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)[:, :, None]
    return a * (1 - t) + b * np.clip(t, 0, 1)


def render_frames(name: str, session: int, n_frames: int, *, size: int = 128,
                  seed: int = 0, first_frame: int = 0) -> np.ndarray:
    """Render ``n_frames`` consecutive frames of ``name`` in ``session`` as NxSxSx3 uint8.

    ``first_frame`` continues the same session (frames ``first_frame`` .. ``+n_frames - 1``),
    so disjoint ranges of one session can serve as train and held-out frames.
    """
    if n_frames < 0 or size < 8:
        raise ValueError('n_frames must be >= 0 and size >= 8')
    style = session_style(name, session, seed)
    photo = load_photo(name)
    ph, pw = photo.shape[:2]
    x0, y0, x1, y1 = style.view
    photo = photo[round(y0 * ph):round(y1 * ph), round(x0 * pw):round(x1 * pw)]
    photo = photo.astype(np.float32)
    bg_rng = _rng('background', name, session, seed)
    background = _background(style, size, bg_rng)
    h, w = photo.shape[:2]
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for k in range(n_frames):
        i = first_frame + k
        jitter = _rng('frame', name, session, seed, i).normal(0, 1, 4)
        t = style.phase + 0.15 * i
        dx, dy, da, ds = style.drift
        scale = style.scale * (1 + ds * math.sin(0.7 * t) + 0.01 * jitter[0]) * size / max(h, w)
        angle = style.angle + da * math.sin(t) + 0.8 * jitter[1]
        cx = (style.centre[0] + dx * math.cos(1.3 * t) + 0.005 * jitter[2]) * size
        cy = (style.centre[1] + dy * math.sin(0.9 * t) + 0.005 * jitter[3]) * size
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        m[:, 2] += (cx - w / 2, cy - h / 2)
        warped = cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)
        mask = cv2.warpAffine(np.ones((h, w), np.float32), m, (size, size),
                              flags=cv2.INTER_LINEAR)[:, :, None]
        obj = (warped - 127.5) * style.contrast + 127.5 + style.brightness
        obj = obj * np.array(style.tint, np.float32)
        frame = obj * mask + background * (1 - mask)
        frames[k] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames
