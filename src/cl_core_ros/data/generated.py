"""Object-sessions rendered on demand, numbered like CORe50, for protocols without files on disk.

A :class:`GeneratedSource` holds N objects with ids 1..N (as CORe50 numbers its objects), a
category of its own for every object, and renders any frame of any session of them,
deterministically for its seed:

``hard`` (:func:`hard_source`)
    the hard stream of :mod:`cl_core_ros.data.scenes`: the taught objects of
    :func:`~cl_core_ros.data.scenes.make_stream` (photographic cut-outs over photographic
    backgrounds); categories are the stamps' top folders (``animals``, ``town``, ...).
``photos`` (:func:`photo_source`)
    scikit-image's bundled photos filmed as objects by :mod:`cl_core_ros.data.photos`; each
    photo is its own category. Sessions are square; the frame is filled by centring the square
    on a grey canvas (as the demo's camera shows them).

Sessions are numbered like this: training sessions 1, 2, ... (session ``r + 1`` is round ``r`` of
a stream; for ``hard`` it is the training split's session ``r``), test sessions
:data:`TEST_SESSIONS` (100..103; for ``hard`` the test split's sessions 0..3, whose background
photos no training session uses). Frames of a session are numbered from 0.

A :class:`GeneratedFrame` is one frame, with the ``session``/``object``/``frame`` fields of a
:class:`~cl_core_ros.data.core50.Core50Frame`; ``read()`` renders its pixels.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
import random

import numpy as np

SOURCES = ('hard', 'photos')
TEST_SESSIONS = (100, 101, 102, 103)
DEFAULT_FRAME_SIZE = (640, 480)  # width, height
MAX_OBJECTS = 50                 # object ids stay in CORe50's range (bags label frames that way)
BORDER_GREY = 90                 # the canvas around square photo sessions

Renderer = Callable[[str, int, int, int], np.ndarray]  # (name, session, first_frame, n) -> NxHxWx3


class SourceError(ValueError):
    """A generated source that cannot be made with the given options."""


@dataclass(frozen=True, order=True)
class GeneratedFrame:
    """One rendered frame: object ``object`` in ``session``, frame number ``frame``."""

    session: int
    object: int
    frame: int
    source: 'GeneratedSource' = field(compare=False, repr=False)

    def read(self) -> np.ndarray:
        """Render the frame: HxWx3 uint8 RGB at the source's frame size."""
        return self.source.render(self.object, self.session, self.frame, 1)[0]

    @property
    def is_test(self) -> bool:
        """True when the frame belongs to a test session."""
        return self.session in TEST_SESSIONS

    def __str__(self) -> str:
        return f'{self.source.name}:s{self.session}/o{self.object}/{self.frame:03d}'


class GeneratedSource:
    """Objects 1..N that are rendered on demand (see the module docstring).

    Args:
        name: the source's name (``hard`` or ``photos``).
        object_names: the name of object id ``k`` is ``object_names[k - 1]``.
        labels: the class label of every object (same order), unique.
        categories: the category index of every object (same order).
        category_names: the name of every category index.
        renderer: ``renderer(name, session, first_frame, n)`` returns n frames NxHxWx3 uint8.
        seed: the seed the source was made with.
        frame_size: width, height of every frame.
        details: what else describes the source (recorded in summaries and bags).

    """

    def __init__(self, name: str, object_names: Sequence[str], labels: Sequence[str],
                 categories: Sequence[int], category_names: Sequence[str], renderer: Renderer,
                 *, seed: int, frame_size: tuple[int, int], details: dict | None = None):
        if not 1 <= len(object_names) <= MAX_OBJECTS:
            raise SourceError(f'{name}: 1..{MAX_OBJECTS} objects, got {len(object_names)}')
        if not len(object_names) == len(labels) == len(categories) == len(set(labels)):
            raise SourceError(f'{name}: one unique label and one category per object')
        self.name = name
        self.object_names = tuple(object_names)
        self.labels = tuple(labels)
        self.categories = tuple(int(c) for c in categories)
        self.category_names = tuple(category_names)
        self.seed = seed
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.details = dict(details or {})
        self._renderer = renderer

    @property
    def protocol_name(self) -> str:
        """Name of the protocols built on this source, e.g. ``NICv2-style-hard``.

        Their stream is not the official NICv2 structure (every object taught alone in round
        one, no multi-object first batch): "NICv2-style" says so wherever it is reported.
        """
        return f'NICv2-style-{self.name}'

    @property
    def test_sessions(self) -> tuple[int, ...]:
        """The test sessions (100..103)."""
        return TEST_SESSIONS

    @property
    def objects(self) -> tuple[int, ...]:
        """Object ids 1..N."""
        return tuple(range(1, len(self.object_names) + 1))

    def _index(self, obj: int) -> int:
        if not isinstance(obj, int | np.integer) or not 1 <= obj <= len(self.object_names):
            raise SourceError(f'{self.name}: no object {obj!r} (ids 1..{len(self.object_names)})')
        return int(obj) - 1

    def name_of(self, obj: int) -> str:
        """Return the object's name, e.g. ``animals/birds/lark``."""
        return self.object_names[self._index(obj)]

    def category(self, obj: int) -> int:
        """Return the object's category index (into :attr:`category_names`)."""
        return self.categories[self._index(obj)]

    def label(self, obj: int, classes: str = 'object') -> str:
        """Return the class label of an object: its own (``object``) or its category's."""
        if classes == 'category':
            return self.category_names[self.category(obj)]
        if classes != 'object':
            raise SourceError(f"classes must be 'object' or 'category', got {classes!r}")
        return self.labels[self._index(obj)]

    def render(self, obj: int, session: int, first_frame: int, n_frames: int) -> np.ndarray:
        """Render frames ``first_frame .. first_frame + n_frames - 1`` of ``obj`` in ``session``.

        Returns N x H x W x 3 uint8 RGB at :attr:`frame_size`.
        """
        if not isinstance(session, int | np.integer) or session < 1:
            raise SourceError(f'{self.name}: sessions are numbered from 1, got {session!r}')
        if first_frame < 0 or n_frames < 0:
            raise SourceError(f'{self.name}: frame numbers and counts must be >= 0')
        return self._renderer(self.name_of(obj), int(session), int(first_frame), int(n_frames))

    def frames(self, obj: int, session: int, n_frames: int,
               first_frame: int = 0) -> tuple[GeneratedFrame, ...]:
        """Return frames ``first_frame ..`` of ``obj`` in ``session`` (rendered when read)."""
        self._index(obj)
        return tuple(GeneratedFrame(session, obj, first_frame + k, self)
                     for k in range(n_frames))

    def describe(self) -> dict:
        """Return a JSON-ready description: name, seed, frame size, objects, categories."""
        return {
            'name': self.name, 'seed': self.seed, 'frame_size': list(self.frame_size),
            'objects': {str(o): self.name_of(o) for o in self.objects},
            'labels': {str(o): self.labels[o - 1] for o in self.objects},
            'categories': {str(o): self.category_names[self.category(o)]
                           for o in self.objects},
            'test_sessions': list(TEST_SESSIONS), **self.details,
        }

    def __repr__(self) -> str:
        return (f'GeneratedSource({self.name!r}, {len(self.object_names)} objects, '
                f'seed={self.seed}, frame_size={self.frame_size})')


def _check_size(frame_size: tuple[int, int]) -> tuple[int, int]:
    width, height = (int(v) for v in frame_size)
    if min(width, height) < 32:
        raise SourceError(f'frames must be at least 32x32, got {width}x{height}')
    return width, height


def _unique_labels(names: Sequence[str], short: Callable[[str], str]) -> list[str]:
    """Short names as labels, the full name where two short names would be the same."""
    shorts = [short(n) for n in names]
    return [s if shorts.count(s) == 1 else n for n, s in zip(names, shorts)]


def hard_source(n_objects: int = 8, *, seed: int = 0,
                frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE) -> GeneratedSource:
    """Return the hard stream's first ``n_objects`` taught objects as a source.

    Objects are :func:`~cl_core_ros.data.scenes.make_stream`'s taught objects for ``seed``, in
    its order. Training session ``s`` is the training split's session ``s - 1``; test session
    ``100 + i`` the test split's session ``i``. Fetches the Debian packages on first use
    (:class:`~cl_core_ros.data.debian_packages.PackageUnavailableError` when that fails).
    """
    from cl_core_ros.data import scenes

    width, height = _check_size(frame_size)
    if not 1 <= n_objects <= MAX_OBJECTS:
        raise SourceError(f'hard: 1..{MAX_OBJECTS} objects, got {n_objects}')
    try:
        stream = scenes.make_stream(n_taught=n_objects, n_never_taught=0, seed=seed)
    except ValueError as exc:
        raise SourceError(f'hard: {exc}') from None
    names = list(stream.taught)
    category_names = tuple(dict.fromkeys((*scenes.STAMP_CATEGORIES,
                                          *(n.split('/', 1)[0] for n in names))))
    categories = [category_names.index(n.split('/', 1)[0]) for n in names]

    def render(name: str, session: int, first_frame: int, n_frames: int) -> np.ndarray:
        split, index = (('test', session - TEST_SESSIONS[0]) if session >= TEST_SESSIONS[0]
                        else ('train', session - 1))
        return stream.frames(name, split, index, n_frames, first_frame=first_frame,
                             frame_size=(width, height))

    return GeneratedSource(
        'hard', names, _unique_labels(names, scenes.short_name), categories, category_names,
        render, seed=seed, frame_size=(width, height),
        details={'train_backgrounds': list(stream.train_backgrounds),
                 'test_backgrounds': list(stream.test_backgrounds)})


def photo_source(n_objects: int = 8, *, seed: int = 0,
                 frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE) -> GeneratedSource:
    """Return ``n_objects`` of scikit-image's photos (a seeded choice) as a source.

    Sessions are rendered by :func:`~cl_core_ros.data.photos.render_frames` as squares of the
    frame's short side, centred on a grey canvas of ``frame_size``.
    """
    from cl_core_ros.data import photos

    width, height = _check_size(frame_size)
    available = photos.OBJECT_NAMES
    if not 1 <= n_objects <= len(available):
        raise SourceError(f'photos: 1..{len(available)} objects, got {n_objects}')
    names = random.Random(seed).sample(available, n_objects)
    side = min(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2

    def render(name: str, session: int, first_frame: int, n_frames: int) -> np.ndarray:
        squares = photos.render_frames(name, session, n_frames, size=side, seed=seed,
                                       first_frame=first_frame)
        if (width, height) == (side, side):
            return squares
        frames = np.full((n_frames, height, width, 3), BORDER_GREY, np.uint8)
        frames[:, y0:y0 + side, x0:x0 + side] = squares
        return frames

    return GeneratedSource('photos', names, names, range(n_objects), names, render,
                           seed=seed, frame_size=(width, height))


def make_source(name: str, n_objects: int = 8, *, seed: int = 0,
                frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE) -> GeneratedSource:
    """Return the source ``name`` (one of :data:`SOURCES`)."""
    makers = {'hard': hard_source, 'photos': photo_source}
    if name not in makers:
        raise SourceError(f'source must be one of {SOURCES}, got {name!r}')
    return makers[name](n_objects, seed=seed, frame_size=frame_size)


# --- a source laid out as CORe50 --------------------------------------------------------------

# CORe50's 11 sessions: the training ones take the source's training sessions 1..8 in order,
# the test sessions s3, s7, s10 its test sessions (backgrounds no training session uses).
CORE50_TRAIN_SESSIONS = (1, 2, 4, 5, 6, 8, 9, 11)
CORE50_TEST_SESSIONS = (3, 7, 10)


def core50_object_ids(n_objects: int) -> list[int]:
    """Return the CORe50 ids that a source's objects 1..N take: o1, o6, ..., o46, o2, o7, ...

    The first ten land in ten different categories (CORe50's category is ``(id - 1) // 5``),
    so a NICv2 first batch (one object per category) finds ten objects in s1.
    """
    if not 1 <= n_objects <= MAX_OBJECTS:
        raise SourceError(f'1..{MAX_OBJECTS} objects, got {n_objects}')
    return [1 + 5 * (k % 10) + k // 10 for k in range(n_objects)]


def write_core50_layout(source: GeneratedSource, root, *, frames: int = 20,
                        size: int = 128) -> dict[int, int]:
    """Render every object of ``source`` in 11 sessions into ``root/core50_{size}x{size}``.

    Files are named and placed as CORe50's (``sS/oO/C_SS_OO_FFF.png``, frames from 000);
    source object ``k`` becomes CORe50 object :func:`core50_object_ids` ``[k - 1]``; CORe50
    training session ``CORE50_TRAIN_SESSIONS[i]`` is the source's training session ``i + 1``,
    test session ``CORE50_TEST_SESSIONS[i]`` its test session ``i``. The source must render
    square frames of ``size``. Returns {CORe50 object id: source object id}.
    """
    from pathlib import Path

    import cv2

    from cl_core_ros.data.core50 import frame_file_name, LAYOUT_DIRS

    if size not in LAYOUT_DIRS:
        raise SourceError(f'size must be one of {sorted(LAYOUT_DIRS)}, got {size!r}')
    if source.frame_size != (size, size):
        raise SourceError(f'the source renders {source.frame_size}, the layout needs '
                          f'{size}x{size}')
    if not 1 <= frames <= 1000:
        raise SourceError(f'frames must be in 1..1000, got {frames}')
    layout = Path(root) / LAYOUT_DIRS[size]
    ids = dict(zip(core50_object_ids(len(source.objects)), source.objects))
    sessions = {**{s: k + 1 for k, s in enumerate(CORE50_TRAIN_SESSIONS)},
                **{s: TEST_SESSIONS[k] for k, s in enumerate(CORE50_TEST_SESSIONS)}}
    for session, source_session in sorted(sessions.items()):
        for obj, source_obj in sorted(ids.items()):
            folder = layout / f's{session}' / f'o{obj}'
            folder.mkdir(parents=True, exist_ok=True)
            images = source.render(source_obj, source_session, 0, frames)
            for frame, image in enumerate(images):
                path = folder / frame_file_name(session, obj, frame)
                if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                    raise OSError(f'cannot write {path}')
    return ids
