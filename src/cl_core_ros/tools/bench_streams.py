"""The streams ``benchmark_core`` runs: the hard scene stream, the packaged photos, Fashion-MNIST.

A stream is a list of experiences (one object filmed in one session), test sessions of every
taught object, and test sessions of objects that are never taught (the open set). Frames are
rendered lazily (``make()``) so a caller encodes them one experience at a time.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Frames = Callable[[], np.ndarray]

PHOTO_TEST_SESSIONS = (100, 101, 102, 103)  # never used for training


@dataclass
class BenchStream:
    """What a benchmark run teaches and tests.

    Attributes:
        name: 'hard', 'photos' or 'fashion-mnist'.
        classes: taught class names, in first-taught order.
        experiences: ``(label, session, make)``; the first round teaches every class once.
        tests: ``{label: [make, ...]}``, one entry per test session (frames in time order).
        never_taught: ``{name: [make, ...]}`` test sessions of objects of kinds never taught.
        similar_untaught: the same for untaught objects of a taught kind (reported apart).
        frame_size: (width, height) of the frames.
        description: one line for the printout.
    """

    name: str
    classes: list[str]
    experiences: list[tuple[str, int, Frames]]
    tests: dict[str, list[Frames]]
    never_taught: dict[str, list[Frames]] = field(default_factory=dict)
    similar_untaught: dict[str, list[Frames]] = field(default_factory=dict)
    frame_size: tuple[int, int] = (640, 480)
    description: str = ''


def _rounds(n_classes: int, n_experiences: int, seed: int) -> list[tuple[int, int]]:
    """Return ``(class index, round)`` pairs: every class once per round, in seeded order."""
    rng = np.random.default_rng(seed)
    order: list[tuple[int, int]] = []
    session = 0
    while len(order) < n_experiences:
        order += [(int(k), session) for k in rng.permutation(n_classes)]
        session += 1
    return order[:n_experiences]


def hard_stream(*, n_classes: int = 8, lessons: int = 2, frames: int = 100,
                test_sessions: int = 4, test_frames: int = 25, never_taught: int = 4,
                similar: int = 4, seed: int = 0) -> BenchStream:
    """Return the hard scene stream (EVALUATION.md) of :mod:`cl_core_ros.data.scenes`.

    ``lessons`` rounds teach every object once each (train session ``round``); tests are
    ``test_sessions`` sessions of ``test_frames`` frames per object on test backgrounds.
    """
    from cl_core_ros.data.scenes import make_stream, short_name

    stream = make_stream(n_classes, never_taught, seed=seed, n_similar=similar)
    names = {o: short_name(o) for o in (*stream.taught, *stream.never_taught,
                                        *stream.similar_untaught)}

    def session(obj: str, split: str, index: int, n: int) -> Frames:
        return lambda: stream.frames(obj, split, index, n)

    experiences = [(names[stream.taught[k]], r, session(stream.taught[k], 'train', r, frames))
                   for k, r in _rounds(n_classes, n_classes * lessons, seed)]

    def tests_of(objects) -> dict[str, list[Frames]]:
        return {names[o]: [session(o, 'test', k, test_frames) for k in range(test_sessions)]
                for o in objects}

    return BenchStream(
        name='hard', classes=[names[o] for o in stream.taught], experiences=experiences,
        tests=tests_of(stream.taught), never_taught=tests_of(stream.never_taught),
        similar_untaught=tests_of(stream.similar_untaught),
        description=(f'hard scenes (seed {seed}): {n_classes} objects x {lessons} lesson(s) of '
                     f'{frames} frames on {len(stream.train_backgrounds)} training photos; '
                     f'tests: {test_sessions} sessions x {test_frames} frames per object on '
                     f'{len(stream.test_backgrounds)} other photos; {never_taught} never-taught '
                     f'objects of other kinds, {len(stream.similar_untaught)} of taught kinds'))


def photo_stream(*, n_classes: int = 12, n_experiences: int = 30, frames: int = 100,
                 test_frames: int = 40, never_taught: int = 4, seed: int = 0) -> BenchStream:
    """Return the packaged photo stream: each scikit-image photo is an object (the easy one)."""
    from cl_core_ros.data.photos import OBJECT_NAMES, render_frames

    if n_classes + never_taught > len(OBJECT_NAMES):
        raise ValueError(f'--classes: at most {len(OBJECT_NAMES) - never_taught} photo objects')
    classes = list(OBJECT_NAMES[:n_classes])
    strangers = list(OBJECT_NAMES[n_classes:n_classes + never_taught])
    experiences = [(classes[k], s, lambda n=classes[k], s=s: render_frames(n, s, frames,
                                                                            size=320, seed=seed))
                   for k, s in _rounds(n_classes, n_experiences, seed)]
    per_session = max(1, test_frames // len(PHOTO_TEST_SESSIONS))

    def tests_of(names) -> dict[str, list[Frames]]:
        return {n: [lambda n=n, s=s: render_frames(n, s, per_session, size=320, seed=seed)
                    for s in PHOTO_TEST_SESSIONS] for n in names}

    return BenchStream(name='photos', classes=classes, experiences=experiences,
                       tests=tests_of(classes), never_taught=tests_of(strangers),
                       frame_size=(320, 320),
                       description=f'packaged photos: {n_classes} objects, {n_experiences} '
                                   f'experiences of {frames} frames, plain backdrops')


def fashion_stream(*, n_experiences: int = 30, frames: int = 100, test_frames: int = 40,
                   seed: int = 0) -> BenchStream:
    """Return a Fashion-MNIST stream: each experience is ``frames`` new images of one class."""
    from cl_core_ros.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist

    images, labels = load_fashion_mnist('train')
    test_images, test_labels = load_fashion_mnist('test')
    classes = list(CLASS_NAMES)
    rng = np.random.default_rng(seed)
    pools = {k: rng.permutation(np.flatnonzero(labels == k)) for k in range(len(classes))}
    used = dict.fromkeys(range(len(classes)), 0)
    experiences = []
    for k, s in _rounds(len(classes), n_experiences, seed):
        idx = pools[k][used[k]:used[k] + frames]
        used[k] += frames
        experiences.append((classes[k], s, lambda idx=idx: images[idx]))
    tests = {classes[k]: [lambda k=k: test_images[np.flatnonzero(test_labels == k)[:test_frames]]]
             for k in range(len(classes))}
    return BenchStream(name='fashion-mnist', classes=classes, experiences=experiences,
                       tests=tests, frame_size=(28, 28),
                       description=f'Fashion-MNIST: {n_experiences} experiences of {frames}')
