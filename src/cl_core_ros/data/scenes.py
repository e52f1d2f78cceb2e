"""The hard stream: photographic objects filmed in photographic scenes, as a robot meets them.

Objects are photographic cut-outs with an alpha channel from Debian's ``tuxpaint-stamps-default``
(categories of :data:`STAMP_CATEGORIES`; drawings are left out by :func:`is_photographic`).
Backgrounds are the photographs among Debian's ``plasma-workspace-wallpapers``
(:data:`PHOTO_WALLPAPERS`; the abstract ones are left out). Both packages are fetched into a cache
on first use (:mod:`cl_core_ros.data.debian_packages`).

A *session* imitates CORe50: one object held in front of one background for N frames, drifting,
turning (+-25 deg) and changing scale (object side 35-70% of the frame height), with a slowly
panning camera and per-session brightness, contrast, colour cast, focus and sensor noise. Frames
are rendered at the camera's resolution (640x480 by default), not at model resolution.

:func:`make_stream` splits the background photos into a training pool and a test pool, so that
**train and test sessions never share a background image**, and picks the taught and the
never-taught objects. Everything is deterministic for a seed.
"""

from collections.abc import Sequence
from dataclasses import dataclass
import functools
import math
from pathlib import Path
import zlib

import cv2
import numpy as np

from cl_core_ros.data.debian_packages import package_root

STAMPS_PACKAGE = 'tuxpaint-stamps-default'
WALLPAPERS_PACKAGE = 'plasma-workspace-wallpapers'
_STAMPS_DIR = 'usr/share/tuxpaint/stamps'
_WALLPAPERS_DIR = 'usr/share/wallpapers'

STAMP_CATEGORIES = ('animals', 'town', 'sports', 'clothes', 'space', 'people', 'military',
                    'medical', 'naturalforces')
# Wallpapers of plasma-workspace-wallpapers 5.27 that are photographs (checked by eye).
PHOTO_WALLPAPERS = ('Autumn', 'BytheWater', 'ColdRipple', 'ColorfulCups', 'DarkestHour',
                    'EveningGlow', 'FallenLeaf', 'Grey', 'Kite', 'OneStandsOut', 'Path', 'Volna',
                    'summer_1am')
MIN_COLOURS = 300        # distinct 5-bit-per-channel colours among a stamp's opaque pixels
MIN_OPAQUE_PIXELS = 4000
_MAX_STAMP_SIDE = 512
_MAX_BACKGROUND_SIDE = 1600
FRAME_SIZE = (640, 480)  # width, height


def _rng(*parts) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32('/'.join(str(p) for p in parts).encode()))


# ---------------------------------------------------------------------------------- assets
def is_photographic(rgba: np.ndarray) -> bool:
    """Tell whether a stamp (HxWx4 uint8) looks like a photograph rather than a drawing.

    Rule: at least :data:`MIN_COLOURS` distinct colours (5 bits per channel) among the opaque
    pixels, and at least :data:`MIN_OPAQUE_PIXELS` opaque pixels. Flat-shaded drawings have a
    few dozen to a couple of hundred colours.
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        return False
    opaque = rgba[rgba[:, :, 3] > 200][:, :3]
    if len(opaque) < MIN_OPAQUE_PIXELS:
        return False
    q = (opaque >> 3).astype(np.int32)
    return len(np.unique(q[:, 0] << 10 | q[:, 1] << 5 | q[:, 2])) >= MIN_COLOURS


@functools.cache
def object_catalogue() -> dict[str, Path]:
    """Return ``{object name: stamp file}`` of every photographic stamp, sorted by name.

    The name is the stamp's path below the stamps folder without suffix, e.g.
    ``animals/mammals/zebra``. Mirrored copies and ``cartoon`` folders are skipped.
    Raises PackageUnavailableError when the stamps cannot be fetched.
    """
    root = package_root(STAMPS_PACKAGE, _STAMPS_DIR) / _STAMPS_DIR
    found = {}
    for category in STAMP_CATEGORIES:
        for path in sorted((root / category).rglob('*.png')):
            rel = path.relative_to(root).with_suffix('').as_posix()
            if 'cartoon' in rel.split('/') or rel.endswith('_mirror'):
                continue
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is not None and is_photographic(image):
                found[rel] = path
    return dict(sorted(found.items()))


@functools.cache
def load_object(name: str) -> np.ndarray:
    """Return the stamp ``name`` as HxWx4 float32 RGBA (alpha in 0..1), trimmed to its alpha.

    The longest side is at most 512 pixels. Raises KeyError for a name not in the catalogue.
    """
    catalogue = object_catalogue()
    if name not in catalogue:
        raise KeyError(f'unknown object {name!r} (see object_catalogue())')
    bgra = cv2.imread(str(catalogue[name]), cv2.IMREAD_UNCHANGED)
    rgba = cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)
    ys, xs = np.nonzero(rgba[:, :, 3] > 8)
    rgba = rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    scale = _MAX_STAMP_SIDE / max(rgba.shape[:2])
    if scale < 1:
        size = (max(1, round(rgba.shape[1] * scale)), max(1, round(rgba.shape[0] * scale)))
        rgba = cv2.resize(rgba, size, interpolation=cv2.INTER_AREA)
    out = rgba.astype(np.float32)
    out[:, :, 3] /= 255.0
    out.setflags(write=False)
    return out


def background_catalogue() -> dict[str, Path]:
    """Return ``{wallpaper name: image file}`` of the photographic wallpapers.

    The smallest landscape image of each wallpaper is used. Raises PackageUnavailableError when the
    wallpapers cannot be fetched.
    """
    root = package_root(WALLPAPERS_PACKAGE, _WALLPAPERS_DIR) / _WALLPAPERS_DIR
    found = {}
    for name in PHOTO_WALLPAPERS:
        images = [p for p in (root / name / 'contents' / 'images').glob('*')
                  if p.suffix.lower() in ('.jpg', '.jpeg', '.png')]
        landscape = [p for p in images if _is_landscape(p.stem)]
        if landscape:
            found[name] = min(landscape, key=lambda p: p.stat().st_size)
    if not found:
        raise FileNotFoundError(f'no photographic wallpaper found under {root}')
    return found


def _is_landscape(stem: str) -> bool:
    try:
        width, height = (int(v) for v in stem.split('x'))
    except ValueError:
        return False
    return width >= height


@functools.cache
def load_background(name: str) -> np.ndarray:
    """Return wallpaper ``name`` as HxWx3 uint8 RGB, longest side at most 1600 pixels."""
    path = background_catalogue()[name]
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'{path}: unreadable image')
    scale = _MAX_BACKGROUND_SIDE / max(bgr.shape[:2])
    if scale < 1:
        size = (round(bgr.shape[1] * scale), round(bgr.shape[0] * scale))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb.setflags(write=False)
    return rgb


# ---------------------------------------------------------------------------------- sessions
@dataclass(frozen=True)
class SceneSession:
    """How one session films its object (drawn from a seeded generator).

    Lengths are fractions of the frame height, angles in degrees, photometry in 0..255 units.
    """

    background: str
    view: tuple[float, float, float]   # background crop: centre x, y (fractions), width fraction
    pan: tuple[float, float]           # camera pan amplitude (fraction of the crop)
    side: float                        # object's longest side / frame height (0.35..0.7)
    angle: float                       # base rotation (-25..25)
    centre: tuple[float, float]        # object centre, fraction of width / height
    drift: tuple[float, float, float, float]  # amplitudes: x, y, angle, relative scale
    phase: float
    brightness: float
    contrast: float
    tint: tuple[float, float, float]
    blur: float                        # Gaussian sigma in pixels (focus)
    noise: float                       # sensor noise sigma


def scene_session(obj: str, background: str, session: str, seed: int = 0) -> SceneSession:
    """Return the deterministic style of ``session`` (any string id) of ``obj``."""
    rng = _rng('scene', obj, background, session, seed)
    side = float(rng.uniform(0.4, 0.62))
    return SceneSession(
        background=background,
        view=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7)),
              float(rng.uniform(0.35, 0.8))),
        pan=(float(rng.uniform(0.01, 0.05)), float(rng.uniform(0.01, 0.05))),
        side=side,
        angle=float(rng.uniform(-15, 15)),
        centre=(float(rng.uniform(0.44, 0.56)), float(rng.uniform(0.42, 0.58))),
        drift=(float(rng.uniform(0.02, 0.06)), float(rng.uniform(0.02, 0.06)),
               float(rng.uniform(4, 10)), float(rng.uniform(0.05, 0.12))),
        phase=float(rng.uniform(0, 2 * math.pi)),
        brightness=float(rng.uniform(-30, 30)),
        contrast=float(rng.uniform(0.75, 1.25)),
        tint=tuple(float(t) for t in rng.uniform(0.85, 1.15, 3)),
        blur=float(rng.uniform(0.0, 1.2)),
        noise=float(rng.uniform(1.0, 5.0)),
    )


def render_scene(style: SceneSession, obj: str, n_frames: int, *, seed: int = 0,
                 first_frame: int = 0, frame_size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """Render frames ``first_frame .. first_frame + n_frames - 1`` of a session.

    Returns N x H x W x 3 uint8 RGB (``frame_size`` is width, height). Raises ValueError for a
    negative count or a frame smaller than 32 pixels.
    """
    width, height = frame_size
    if n_frames < 0 or min(width, height) < 32:
        raise ValueError('n_frames must be >= 0 and the frame at least 32x32')
    stamp = load_object(obj)
    scene = load_background(style.background)
    sh, sw = stamp.shape[:2]
    bh, bw = scene.shape[:2]
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    gain = np.array(style.tint, np.float32) * style.contrast
    for k in range(n_frames):
        i = first_frame + k
        jitter = _rng('frame', obj, style, seed, i).normal(0, 1, 6)
        t = style.phase + 0.12 * i
        # Background: a crop of the photo with the frame's aspect, panning slowly.
        crop_w = min(style.view[2] * bw, bh * width / height)
        crop_h = crop_w * height / width
        cx = np.clip(style.view[0] * bw + style.pan[0] * crop_w * math.sin(0.5 * t),
                     crop_w / 2, bw - crop_w / 2)
        cy = np.clip(style.view[1] * bh + style.pan[1] * crop_h * math.cos(0.4 * t),
                     crop_h / 2, bh - crop_h / 2)
        s = width / crop_w
        m_bg = np.array([[s, 0, width / 2 - s * cx], [0, s, height / 2 - s * cy]], np.float32)
        frame = cv2.warpAffine(scene, m_bg, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        # Object: rotate, scale (side 35-70% of the frame height) and move around the centre.
        dx, dy, da, ds = style.drift
        side = np.clip(style.side * (1 + ds * math.sin(0.7 * t) + 0.01 * jitter[0]), 0.35, 0.7)
        angle = np.clip(style.angle + da * math.sin(t) + 0.8 * jitter[1], -25, 25)
        ox = (style.centre[0] + dx * math.cos(1.1 * t) + 0.003 * jitter[2]) * width
        oy = (style.centre[1] + dy * math.sin(0.9 * t) + 0.003 * jitter[3]) * height
        m = cv2.getRotationMatrix2D((sw / 2, sh / 2), float(angle), side * height / max(sh, sw))
        m[:, 2] += (ox - sw / 2, oy - sh / 2)
        warped = cv2.warpAffine(stamp, m, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT)
        alpha = warped[:, :, 3:4]
        frame = warped[:, :, :3] * alpha + frame * (1 - alpha)
        # Camera: focus, exposure, colour cast, sensor noise.
        if style.blur > 0.3:
            frame = cv2.GaussianBlur(frame, (0, 0), style.blur)
        frame = (frame - 127.5) * gain + 127.5 + style.brightness
        noise = _rng('noise', obj, style, seed, i).normal(0, style.noise, frame.shape)
        frames[k] = np.clip(frame + noise.astype(np.float32), 0, 255).astype(np.uint8)
    return frames


# ---------------------------------------------------------------------------------- stream
@dataclass(frozen=True)
class HardStream:
    """Which objects are taught, which are never taught, and the background pools.

    ``never_taught`` objects are of kinds no taught object is of (:func:`object_group`): they
    measure the open set. ``similar_untaught`` objects share a kind with a taught one (a second
    rabbit when a rabbit was taught): a fine-grained question, reported apart.
    ``train_backgrounds`` and ``test_backgrounds`` share no image.
    """

    taught: tuple[str, ...]
    never_taught: tuple[str, ...]
    train_backgrounds: tuple[str, ...]
    test_backgrounds: tuple[str, ...]
    seed: int = 0
    similar_untaught: tuple[str, ...] = ()

    def session(self, obj: str, split: str, index: int) -> SceneSession:
        """Return session ``index`` (0-based) of ``obj`` in ``split`` ('train' or 'test').

        Consecutive sessions of one object use different background photos of the split's pool
        (cycling when there are more sessions than photos).
        """
        if split not in ('train', 'test'):
            raise ValueError("split must be 'train' or 'test'")
        if index < 0:
            raise ValueError('session index must be >= 0')
        pool = self.train_backgrounds if split == 'train' else self.test_backgrounds
        order = _rng('backgrounds', obj, split, self.seed).permutation(len(pool))
        background = pool[int(order[index % len(pool)])]
        return scene_session(obj, background, f'{split}{index}', self.seed)

    def frames(self, obj: str, split: str, index: int, n_frames: int, *,
               first_frame: int = 0, frame_size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
        """Render ``n_frames`` frames of session ``index`` of ``obj`` in ``split``."""
        return render_scene(self.session(obj, split, index), obj, n_frames, seed=self.seed,
                            first_frame=first_frame, frame_size=frame_size)


def object_group(obj: str) -> str:
    """Return the kind of an object: its first two name parts (``animals/birds``)."""
    return '/'.join(obj.split('/')[:2])


def make_stream(n_taught: int = 8, n_never_taught: int = 4, *, seed: int = 0,
                n_test_backgrounds: int | None = None, n_similar: int = 4,
                objects: Sequence[str] | None = None) -> HardStream:
    """Pick taught and never-taught objects and split the background photos; deterministic.

    ``objects`` fixes the candidates (default: the whole catalogue, shuffled by ``seed``); the
    first ``n_taught`` are taught; of the others, the first ``n_never_taught`` whose kind
    (:func:`object_group`) no taught object has are never taught, and the first ``n_similar``
    that share a kind with a taught object are ``similar_untaught``. About half the photos
    (``n_test_backgrounds``, default 7 of 13) are kept for test sessions only.
    Raises ValueError when there are not enough objects or backgrounds.
    """
    if n_taught < 1 or n_never_taught < 0 or n_similar < 0:
        raise ValueError('n_taught must be >= 1, n_never_taught and n_similar >= 0')
    if objects is None:
        names = list(object_catalogue())
        objects = [names[i] for i in _rng('objects', seed).permutation(len(names))]
    taught = tuple(objects[:n_taught])
    kinds = {object_group(o) for o in taught}
    rest = objects[n_taught:]
    never = tuple(o for o in rest if object_group(o) not in kinds)[:n_never_taught]
    similar = tuple(o for o in rest if object_group(o) in kinds)[:n_similar]
    if len(taught) < n_taught or len(never) < n_never_taught:
        raise ValueError(f'{len(objects)} objects: {n_taught} taught and {n_never_taught} '
                         'never-taught of other kinds needed')
    backgrounds = sorted(background_catalogue())
    n_test = n_test_backgrounds if n_test_backgrounds is not None else (len(backgrounds) + 1) // 2
    if not 1 <= n_test < len(backgrounds):
        raise ValueError(f'n_test_backgrounds must be in 1..{len(backgrounds) - 1}')
    order = [backgrounds[i] for i in _rng('split', seed).permutation(len(backgrounds))]
    return HardStream(taught=taught, never_taught=never, similar_untaught=similar,
                      train_backgrounds=tuple(sorted(order[n_test:])),
                      test_backgrounds=tuple(sorted(order[:n_test])), seed=seed)


def short_name(obj: str) -> str:
    """Return the last part of an object name (``animals/mammals/zebra`` -> ``zebra``)."""
    return obj.rsplit('/', 1)[-1]
