"""Continual-learning protocols on a CORe50 tree: NICv2-style streams of object-sessions.

CORe50's NICv2 protocols (Lomonaco et al., 2019) teach a stream of *experiences*: the first one
holds 10 objects (one per category) filmed in one training session; every later experience is
one object in one training session (about 300 frames), new classes appearing interleaved with
new sessions of known ones. NICv2-391 is that stream over all 50 objects and the 8 training
sessions: 1 + 390 experiences. Accuracy is measured on the test sessions s3, s7 and s10.

:func:`build_protocol` builds such a stream for any folder in the CORe50 layout (the real data
set or a look-alike from :func:`~cl_core_ros.data.core50.make_core50_like`), deterministically
from a seed:

- training sessions are the folder's sessions that are not test sessions; the test sessions are
  s3, s7, s10 (or those of them the folder has, or any given);
- the first experience takes ``first_objects`` objects, one per category while categories last
  (then more objects at random), all from one training session (the seeded choice among the
  sessions that hold the most objects);
- the remaining object-sessions are shuffled, and every class not taught in the first
  experience is introduced at an evenly spread position of the stream, so new classes are
  interleaved with new sessions of known classes (a lesson of a class is never placed before
  the class has been introduced);
- a class is the object (50-way) or its category (10-way);
- ``frames_per_experience`` / ``test_frames_per_session`` keep that many evenly spaced frames of
  each object-session (all frames by default).

:func:`build_generated_protocol` builds the same kind of stream on objects rendered on demand
(:mod:`cl_core_ros.data.generated`: the hard stream, or scikit-image's photos) instead of a
folder: the first round teaches every object once, one object-session per experience, in a seeded
order (each experience introduces its class); every later round brings a new training session of
every known object, again in a seeded order. The test set is every object in each of the source's
4 test sessions. Frames of such a protocol are
:class:`~cl_core_ros.data.generated.GeneratedFrame` objects; like CORe50 frames they have
``session``, ``object`` and ``frame`` fields and a ``read()`` that returns the pixels.

Nothing here imports rclpy or torch: the protocol is plain data, shared by the fast runner (core
calls) and the ROS runner (the nodes' services), so both teach the same stream for one seed.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import logging
from pathlib import Path
import random

from cl_core_ros.data.core50 import (
    category_of,
    Core50Frame,
    Core50Scan,
    scan_core50,
    TEST_SESSIONS,
)
from cl_core_ros.data.generated import GeneratedFrame, GeneratedSource

logger = logging.getLogger(__name__)

CLASS_MODES = ('object', 'category')
# CORe50's categories in the order of their object ids (objects 1-5 are plug adapters, ...).
CATEGORY_NAMES = ('plug_adapter', 'mobile_phone', 'scissors', 'light_bulb', 'can', 'glasses',
                  'ball', 'marker', 'cup', 'remote_control')
DEFAULT_FIRST_OBJECTS = 10
PROTOCOL_NAME = 'NICv2'
DEFAULT_ROUNDS = 2
DEFAULT_GENERATED_FRAMES = 100       # frames per experience of a generated protocol
DEFAULT_GENERATED_TEST_FRAMES = 25   # test frames per object and test session

Frame = Core50Frame | GeneratedFrame


class ProtocolError(ValueError):
    """A protocol that cannot be built from the given folder and options."""


def class_label(obj: int, classes: str = 'object') -> str:
    """Return the class name taught for a CORe50 object: ``o07`` or its category ``light_bulb``."""
    if classes not in CLASS_MODES:
        raise ProtocolError(f'classes must be one of {CLASS_MODES}, got {classes!r}')
    if classes == 'object':
        return f'o{obj:02d}'
    return CATEGORY_NAMES[category_of(obj)]


class Core50Objects:
    """CORe50's objects as a protocol's source: labels ``o07`` or their categories."""

    name = 'core50'
    protocol_name = PROTOCOL_NAME
    category_names = CATEGORY_NAMES

    def category(self, obj: int) -> int:
        """Return the object's category (0..9)."""
        return category_of(obj)

    def label(self, obj: int, classes: str = 'object') -> str:
        """Return the class label of an object (see :func:`class_label`)."""
        return class_label(obj, classes)

    def describe(self) -> dict:
        """Return a JSON-ready description of the source."""
        return {'name': self.name}


CORE50 = Core50Objects()
Source = Core50Objects | GeneratedSource


def subsample(frames: Sequence[Core50Frame], count: int | None) -> tuple[Core50Frame, ...]:
    """Return ``count`` evenly spaced frames (first one included); all of them for None."""
    frames = tuple(frames)
    if count is None or count >= len(frames):
        return frames
    if count < 1:
        raise ProtocolError(f'a frame count must be >= 1, got {count}')
    step = len(frames) / count
    return tuple(frames[int(k * step)] for k in range(count))


@dataclass(frozen=True)
class Lesson:
    """One object filmed in one session, taught under ``label``."""

    session: int
    object: int
    label: str
    frames: tuple[Frame, ...]
    available: int  # frames of this object-session in the folder
    category: int | None = None  # the object's category; None: its CORe50 category

    def __post_init__(self) -> None:
        if self.category is None:
            object.__setattr__(self, 'category', category_of(self.object))

    @property
    def key(self) -> tuple[int, int]:
        """(session, object)."""
        return self.session, self.object


@dataclass(frozen=True)
class Experience:
    """One step of the stream: its lessons and the classes it introduces."""

    index: int
    lessons: tuple[Lesson, ...]
    new_classes: tuple[str, ...]

    @property
    def frames(self) -> int:
        """Training frames of the experience."""
        return sum(len(lesson.frames) for lesson in self.lessons)


@dataclass(frozen=True)
class Protocol:
    """A NICv2-style stream: experiences to teach in order and the frames to test on.

    ``source`` names the objects, their labels and categories: :data:`CORE50` for a folder
    (``root``), a :class:`~cl_core_ros.data.generated.GeneratedSource` otherwise (``root`` None).
    """

    root: Path | None
    classes: str
    seed: int
    train_sessions: tuple[int, ...]
    test_sessions: tuple[int, ...]
    objects: tuple[int, ...]
    first_session: int
    experiences: tuple[Experience, ...]
    test_frames: tuple[Frame, ...]
    total_experiences: int  # length of the full stream before any truncation
    frames_per_experience: int | None = None
    test_frames_per_session: int | None = None
    source: Source = CORE50

    @property
    def name(self) -> str:
        """E.g. ``NICv2-391`` (the full stream's length) or ``NICv2-391[:20]`` if truncated.

        Generated protocols are named after their source: ``NIC-hard-16``, ``NIC-photos-16``.
        """
        name = f'{self.source.protocol_name}-{self.total_experiences}'
        if len(self.experiences) < self.total_experiences:
            name += f'[:{len(self.experiences)}]'
        return name

    @property
    def generated(self) -> bool:
        """True when the frames are rendered on demand (no folder behind the protocol)."""
        return isinstance(self.source, GeneratedSource)

    def label_of(self, obj: int) -> str:
        """Return the class label of an object under this protocol's class mode."""
        return self.source.label(obj, self.classes)

    def category_of(self, obj: int) -> int:
        """Return the category of an object (an index into :attr:`category_names`)."""
        return self.source.category(obj)

    @property
    def category_names(self) -> tuple[str, ...]:
        """Names of the categories, by category index."""
        return tuple(self.source.category_names)

    @property
    def class_labels(self) -> tuple[str, ...]:
        """Every class of the data set (taught or not by the stream), in object order."""
        return tuple(dict.fromkeys(self.label_of(o) for o in self.objects))

    @property
    def categories(self) -> tuple[int, ...]:
        """Categories of the data set's objects."""
        return tuple(sorted({self.category_of(o) for o in self.objects}))

    def order(self) -> list[list[list[int]]]:
        """Return the stream as ``[[[session, object], ...], ...]`` (one list per experience)."""
        return [[[lesson.session, lesson.object] for lesson in exp.lessons]
                for exp in self.experiences]

    def lessons(self) -> list[Lesson]:
        """Return every lesson of the stream in teaching order."""
        return [lesson for exp in self.experiences for lesson in exp.lessons]

    def test_sequences(self) -> dict[tuple[int, int], list[Frame]]:
        """Return the test frames grouped by (session, object)."""
        groups: dict[tuple[int, int], list[Frame]] = {}
        for frame in self.test_frames:
            groups.setdefault((frame.session, frame.object), []).append(frame)
        return groups

    def summary(self) -> dict:
        """Return a JSON-ready description (counts, sessions, the experience order)."""
        return {
            'name': self.name, 'source': self.source.describe(),
            'root': None if self.root is None else str(self.root), 'classes': self.classes,
            'seed': self.seed, 'train_sessions': list(self.train_sessions),
            'test_sessions': list(self.test_sessions), 'objects': list(self.objects),
            'categories': list(self.categories), 'num_classes': len(self.class_labels),
            'first_session': self.first_session,
            'first_objects': [lesson.object for lesson in self.experiences[0].lessons],
            'experiences': len(self.experiences), 'total_experiences': self.total_experiences,
            'train_frames': sum(exp.frames for exp in self.experiences),
            'test_frames': len(self.test_frames),
            'frames_per_experience': self.frames_per_experience,
            'test_frames_per_session': self.test_frames_per_session,
            'order': self.order(),
        }


def _choose_first(rng: random.Random, objects: Sequence[int], count: int) -> list[int]:
    """Pick ``count`` objects: one per category (random categories, random object) first."""
    by_category: dict[int, list[int]] = {}
    for obj in objects:
        by_category.setdefault(category_of(obj), []).append(obj)
    categories = sorted(by_category)
    rng.shuffle(categories)
    chosen = [rng.choice(by_category[c]) for c in categories[:count]]
    rest = [o for o in objects if o not in chosen]
    rng.shuffle(rest)
    chosen += rest[:count - len(chosen)]
    return sorted(chosen)


def _interleave(rng: random.Random, items: list[Lesson], known: set[str]) -> list[Lesson]:
    """Order lessons so that classes not in ``known`` are introduced evenly over the stream.

    Each new class gets one introducing lesson (a random one of its lessons) placed at slot
    ``round((k + 1/2) * n / m)`` of the stream (``m`` new classes, in a random order); the
    other slots take random lessons of classes introduced already. When no such lesson is left,
    the next new class comes early, so no lesson ever precedes the introduction of its class.
    """
    rng.shuffle(items)
    by_class: dict[str, list[Lesson]] = {}
    for item in items:
        by_class.setdefault(item.label, []).append(item)
    new_classes = [c for c in by_class if c not in known]
    rng.shuffle(new_classes)
    n, m = len(items), len(new_classes)
    slots = [round((k + 0.5) * n / m) for k in range(m)]
    pool = [item for item in items if item.label in known]
    waiting = {c: by_class[c] for c in new_classes}
    order: list[Lesson] = []
    next_new = 0
    while len(order) < n:
        due = next_new < m and (len(order) >= slots[next_new] or not pool)
        if due:
            lessons = waiting.pop(new_classes[next_new])
            order.append(lessons[0])
            pool.extend(lessons[1:])
            next_new += 1
        else:
            order.append(pool.pop(rng.randrange(len(pool))))
    return order


def _parse_classes(classes: str) -> str:
    if classes not in CLASS_MODES:
        raise ProtocolError(f'classes must be one of {CLASS_MODES}, got {classes!r}')
    return classes


def build_protocol(root: Path | str | None = None, *, scan: Core50Scan | None = None,
                   seed: int = 0, classes: str = 'object',
                   first_objects: int = DEFAULT_FIRST_OBJECTS, first_session: int | None = None,
                   experiences: int | None = None, frames_per_experience: int | None = None,
                   test_frames_per_session: int | None = None,
                   test_sessions: Iterable[int] | None = None,
                   objects: Iterable[int] | None = None) -> Protocol:
    """Build a NICv2-style protocol over a folder in the CORe50 layout (see the module doc).

    Args:
        root: the layout folder (``core50_128x128``) or the folder holding it.
        scan: an existing :func:`~cl_core_ros.data.core50.scan_core50` result instead of root.
        seed: seeds every choice (first session and objects, stream order); same seed, same
            protocol.
        classes: ``object`` (50-way on CORe50) or ``category`` (10-way).
        first_objects: objects of the first experience (10 in NICv2).
        first_session: training session of the first experience (None: seeded choice).
        experiences: keep only the first N experiences of the stream (None: all).
        frames_per_experience: evenly spaced frames kept per training object-session.
        test_frames_per_session: evenly spaced frames kept per test object-session.
        test_sessions: test sessions (None: those of s3, s7, s10 the folder has).
        objects: objects to use (None: every object of the folder).

    Raises:
        ProtocolError: no training or test session, too few objects, bad option values.

    """
    classes = _parse_classes(classes)
    if scan is None:
        if root is None:
            raise ProtocolError('give root or scan')
        scan = scan_core50(root, objects=objects, verify='header')
    for name, value in (('first_objects', first_objects), ('experiences', experiences),
                        ('frames_per_experience', frames_per_experience),
                        ('test_frames_per_session', test_frames_per_session)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ProtocolError(f'{name} must be an integer >= 1, got {value!r}')
    sequences = scan.sequences()
    if objects is not None:
        wanted = {int(o) for o in objects}
        sequences = {k: v for k, v in sequences.items() if k[1] in wanted}
    present = sorted({s for s, _ in sequences})
    tests = tuple(sorted(set(TEST_SESSIONS if test_sessions is None else test_sessions)
                         & set(present)))
    if not tests:
        wanted_tests = TEST_SESSIONS if test_sessions is None else tuple(test_sessions)
        raise ProtocolError(f'no test session {list(wanted_tests)} in {scan.root} '
                            f'(sessions present: {present})')
    train = tuple(s for s in present if s not in tests)
    if not train:
        raise ProtocolError(f'no training session in {scan.root}: every session present '
                            f'({present}) is a test session')
    train_objects = sorted({o for s, o in sequences if s in train})
    if not train_objects:
        raise ProtocolError(f'no object in the training sessions of {scan.root}')

    rng = random.Random(seed)
    per_session = {s: sorted(o for ss, o in sequences if ss == s) for s in train}
    if first_session is None:
        most = max(len(v) for v in per_session.values())
        first_session = rng.choice([s for s in train if len(per_session[s]) == most])
    elif first_session not in train:
        raise ProtocolError(f'first_session {first_session} is not a training session '
                            f'{list(train)}')
    first = _choose_first(rng, per_session[first_session], first_objects)
    if len(first) < first_objects:
        logger.warning('protocol: session %d has only %d objects; the first experience takes '
                       'them all (asked for %d)', first_session, len(first), first_objects)

    def lesson(session: int, obj: int) -> Lesson:
        frames = sequences[(session, obj)]
        return Lesson(session, obj, class_label(obj, classes),
                      subsample(frames, frames_per_experience), len(frames))

    first_lessons = tuple(lesson(first_session, o) for o in first)
    known = {item.label for item in first_lessons}
    rest = [lesson(s, o) for s in train for o in per_session[s]
            if not (s == first_session and o in first)]
    stream = [Experience(0, first_lessons, tuple(dict.fromkeys(i.label for i in first_lessons)))]
    for item in _interleave(rng, rest, set(known)):
        new = () if item.label in known else (item.label,)
        known.add(item.label)
        stream.append(Experience(len(stream), (item,), new))
    total = len(stream)
    if experiences is not None:
        stream = stream[:experiences]

    test_frames = tuple(frame for (s, o), frames in sorted(sequences.items())
                        if s in tests and o in train_objects
                        for frame in subsample(frames, test_frames_per_session))
    if not test_frames:
        raise ProtocolError(f'no test frames of the training objects in sessions {list(tests)}')
    protocol = Protocol(
        root=Path(scan.root), classes=classes, seed=seed, train_sessions=train,
        test_sessions=tests, objects=tuple(train_objects), first_session=first_session,
        experiences=tuple(stream), test_frames=test_frames, total_experiences=total,
        frames_per_experience=frames_per_experience,
        test_frames_per_session=test_frames_per_session)
    logger.info('protocol %s: %d classes (%s), first experience %d objects from s%d, '
                '%d test frames from sessions %s', protocol.name, len(protocol.class_labels),
                classes, len(first_lessons), first_session, len(test_frames), list(tests))
    return protocol


def build_generated_protocol(source: GeneratedSource, *, seed: int = 0,
                             classes: str = 'object', rounds: int = DEFAULT_ROUNDS,
                             experiences: int | None = None,
                             frames_per_experience: int = DEFAULT_GENERATED_FRAMES,
                             test_frames_per_session: int = DEFAULT_GENERATED_TEST_FRAMES
                             ) -> Protocol:
    """Build a NIC-like protocol over objects rendered on demand (see the module doc).

    Args:
        source: the objects (:func:`~cl_core_ros.data.generated.make_source`).
        seed: seeds the order of every round; same seed, same protocol.
        classes: ``object`` (one class per object) or ``category`` (the source's categories).
        rounds: training sessions per object: round ``r`` teaches training session ``r + 1``
            of every object, one object-session per experience.
        experiences: keep only the first N experiences of the stream (None: all).
        frames_per_experience: frames of each lesson (frames 0 .. N - 1 of its session).
        test_frames_per_session: frames of every object in each test session.

    Raises:
        ProtocolError: bad option values.

    """
    classes = _parse_classes(classes)
    for name, value in (('rounds', rounds), ('experiences', experiences),
                        ('frames_per_experience', frames_per_experience),
                        ('test_frames_per_session', test_frames_per_session)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ProtocolError(f'{name} must be an integer >= 1, got {value!r}')
    if frames_per_experience is None or test_frames_per_session is None:
        raise ProtocolError('a generated protocol needs frames_per_experience and '
                            'test_frames_per_session')
    if rounds >= min(source.test_sessions):
        raise ProtocolError(f'rounds must be below {min(source.test_sessions)}, got {rounds}')
    rng = random.Random(seed)
    stream: list[Experience] = []
    known: set[str] = set()
    for round_index in range(rounds):
        order = list(source.objects)
        rng.shuffle(order)
        session = round_index + 1
        for obj in order:
            label = source.label(obj, classes)
            lesson = Lesson(session, obj, label,
                            source.frames(obj, session, frames_per_experience),
                            frames_per_experience, source.category(obj))
            new = () if label in known else (label,)
            known.add(label)
            stream.append(Experience(len(stream), (lesson,), new))
    total = len(stream)
    if experiences is not None:
        stream = stream[:experiences]
    test_frames = tuple(frame for session in source.test_sessions for obj in source.objects
                        for frame in source.frames(obj, session, test_frames_per_session))
    protocol = Protocol(
        root=None, classes=classes, seed=seed,
        train_sessions=tuple(range(1, rounds + 1)), test_sessions=tuple(source.test_sessions),
        objects=source.objects, first_session=1, experiences=tuple(stream),
        test_frames=test_frames, total_experiences=total,
        frames_per_experience=frames_per_experience,
        test_frames_per_session=test_frames_per_session, source=source)
    logger.info('protocol %s: %d classes (%s) over %d rounds of %s objects, %d test frames from '
                'sessions %s', protocol.name, len(protocol.class_labels), classes, rounds,
                source.name, len(test_frames), list(protocol.test_sessions))
    return protocol


__all__ = ['build_generated_protocol', 'build_protocol', 'CATEGORY_NAMES', 'class_label',
           'CLASS_MODES', 'CORE50', 'Experience', 'Lesson', 'Protocol', 'ProtocolError',
           'subsample']
