"""Continual-learning protocols on a CORe50 tree: NICv2-style streams of object-sessions.

CORe50's NICv2 protocols (Lomonaco et al., 2019) teach a stream of *experiences*: the first one
holds 10 objects (one per category) filmed in one training session; every later experience is
one object in one training session (about 300 frames), new classes appearing interleaved with
new sessions of known ones. NICv2-391 is that stream over all 50 objects and the 8 training
sessions: 1 + 390 experiences. Accuracy is measured on the test sessions s3, s7 and s10.

:func:`build_official_protocol` reads the stream from the authors' batch filelists
(:mod:`cl_core_ros.data.core50_filelists`: ``NIC_v2_391/runN`` or ``sIII_v2_391/runN``, 196, 79):
every batch is one experience, learned as a whole, and the test frames are the run's test list.
That is the stream the published figures were measured on.

:func:`build_protocol` builds a stream with the same structure for any folder in the CORe50
layout (the real data set or a look-alike from
:func:`~cl_core_ros.data.core50.make_core50_like`) from a seed, when no filelists are at hand
(:func:`~cl_core_ros.data.core50_filelists.nicv2_structure`):

- training sessions are the folder's sessions that are not test sessions; the test sessions are
  s3, s7, s10 (or those of them the folder has, or any given);
- the first experience is session s1 (or the first training session) of the first object of
  every category (o1, o6, ..., o46), learned as one multi-class batch;
- then every object's other sessions follow in session order (an object not in the first
  batch enters through its first session), the objects interleaved at random, so new classes
  arrive at irregular positions; ``scenario`` groups 1 (NICv2-391), 2 (NICv2-196) or 5
  (NICv2-79) object-sessions per experience;
- a class is the object (50-way) or its category (10-way);
- ``frames_per_experience`` / ``test_frames_per_session`` keep that many evenly spaced frames of
  each object-session (all frames by default).

:func:`build_generated_protocol` builds the same kind of stream on objects rendered on demand
(:mod:`cl_core_ros.data.generated`: the hard stream, or scikit-image's photos) instead of a
folder: the first round teaches every object once, one object-session per experience, in a seeded
order (each experience introduces its class); every later round brings a new training session of
every known object, again in a seeded order. The test set is every object in each of the source's
4 test sessions. That is not the official structure, so such protocols are named
``NICv2-style-hard-16`` (or ``-photos-``). Frames of such a protocol are
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
from cl_core_ros.data.core50_filelists import (
    check_scenario,
    FilelistError,
    nicv2_structure,
    OfficialRun,
    resolve_frames,
    SCENARIOS,
)
from cl_core_ros.data.generated import GeneratedFrame, GeneratedSource

logger = logging.getLogger(__name__)

CLASS_MODES = ('object', 'category')
# CORe50's categories in the order of their object ids (objects 1-5 are plug adapters, ...).
CATEGORY_NAMES = ('plug_adapter', 'mobile_phone', 'scissors', 'light_bulb', 'can', 'glasses',
                  'ball', 'marker', 'cup', 'remote_control')
DEFAULT_FIRST_OBJECTS = 10
DEFAULT_SCENARIO = 'nicv2_391'
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
    scenario: str | None = None  # nicv2_391 / 196 / 79 (None: a generated source's stream)
    origin: OfficialRun | None = None  # the official filelists the stream was read from

    @property
    def name(self) -> str:
        """E.g. ``NICv2-391`` (the full stream's length) or ``NICv2-391[:20]`` if truncated.

        Generated protocols are named after their source: ``NIC-hard-16``, ``NIC-photos-16``.
        """
        name = f'{self.source.protocol_name}-{self.total_experiences}'
        if self.origin is not None:
            name = self.origin.name
        if len(self.experiences) < self.total_experiences:
            name += f'[:{len(self.experiences)}]'
        return name

    @property
    def structure(self) -> str:
        """How the stream was made: official filelists, official structure, NICv2-style."""
        if self.origin is not None:
            return f'official filelists, run {self.origin.run}'
        if self.generated:
            return 'NICv2-style (not the official structure)'
        return f'official structure, order generated from seed {self.seed}'

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
            'scenario': self.scenario, 'structure': self.structure,
            'filelists': None if self.origin is None else self.origin.describe(),
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


def _parse_classes(classes: str) -> str:
    if classes not in CLASS_MODES:
        raise ProtocolError(f'classes must be one of {CLASS_MODES}, got {classes!r}')
    return classes


def _check_counts(**values) -> None:
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ProtocolError(f'{name} must be an integer >= 1, got {value!r}')


def _scan(root, scan: Core50Scan | None, objects, size: int | None) -> Core50Scan:
    if scan is not None:
        return scan
    if root is None:
        raise ProtocolError('give root or scan')
    try:
        return scan_core50(root, objects=objects, size=size, verify='header')
    except ValueError as exc:  # Core50Error: a folder that is not a CORe50 layout
        raise ProtocolError(str(exc)) from None


def build_protocol(root: Path | str | None = None, *, scan: Core50Scan | None = None,
                   seed: int = 0, classes: str = 'object',
                   first_objects: int = DEFAULT_FIRST_OBJECTS, first_session: int | None = None,
                   experiences: int | None = None, frames_per_experience: int | None = None,
                   test_frames_per_session: int | None = None,
                   test_sessions: Iterable[int] | None = None,
                   objects: Iterable[int] | None = None, scenario: str = DEFAULT_SCENARIO,
                   size: int | None = None) -> Protocol:
    """Build a protocol of the official NICv2 structure over a CORe50 folder (module doc).

    Args:
        root: the layout folder (``core50_128x128``) or the folder holding it.
        scan: an existing :func:`~cl_core_ros.data.core50.scan_core50` result instead of root.
        seed: seeds the order (how the objects' sequences interleave); same seed, same
            protocol.
        classes: ``object`` (50-way on CORe50) or ``category`` (10-way).
        first_objects: objects of the first experience (10 in NICv2: one per category).
        first_session: training session of the first experience (None: s1, or the first
            training session when the folder has no s1).
        experiences: keep only the first N experiences of the stream (None: all).
        frames_per_experience: evenly spaced frames kept per training object-session.
        test_frames_per_session: evenly spaced frames kept per test object-session.
        test_sessions: test sessions (None: those of s3, s7, s10 the folder has).
        objects: objects to use (None: every object of the folder).
        scenario: ``nicv2_391`` (one object-session per experience), ``nicv2_196`` (two) or
            ``nicv2_79`` (five).
        size: 128 or 350, the layout to use when ``root`` holds both.

    Raises:
        ProtocolError: no training or test session, too few objects, bad option values.

    """
    classes = _parse_classes(classes)
    try:
        per_batch = SCENARIOS[check_scenario(scenario)][1]
    except FilelistError as exc:
        raise ProtocolError(str(exc)) from None
    _check_counts(first_objects=first_objects, experiences=experiences,
                  frames_per_experience=frames_per_experience,
                  test_frames_per_session=test_frames_per_session)
    scan = _scan(root, scan, objects, size)
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
    if first_session is None:
        first_session = train[0]
    elif first_session not in train:
        raise ProtocolError(f'first_session {first_session} is not a training session '
                            f'{list(train)}')
    pairs = [(s, o) for s, o in sequences if s in train]
    try:
        batches = nicv2_structure(pairs, seed=seed, per_batch=per_batch,
                                  first_session=first_session, first_objects=first_objects)
    except FilelistError as exc:
        raise ProtocolError(str(exc)) from None
    if len(batches[0]) < first_objects:
        logger.warning('protocol: session %d has only %d objects; the first experience takes '
                       'them all (asked for %d)', first_session, len(batches[0]), first_objects)

    def lesson(session: int, obj: int) -> Lesson:
        frames = sequences[(session, obj)]
        return Lesson(session, obj, class_label(obj, classes),
                      subsample(frames, frames_per_experience), len(frames))

    stream = _experiences([[lesson(s, o) for s, o in batch] for batch in batches])
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
        test_frames_per_session=test_frames_per_session, scenario=scenario)
    logger.info('protocol %s: %d classes (%s), first experience %d objects from s%d, '
                '%d test frames from sessions %s', protocol.name, len(protocol.class_labels),
                classes, len(batches[0]), first_session, len(test_frames), list(tests))
    return protocol


def _experiences(batches: Sequence[Sequence[Lesson]]) -> list[Experience]:
    """Return the batches as numbered experiences, each naming the classes it introduces."""
    known: set[str] = set()
    stream = []
    for batch in batches:
        new = tuple(dict.fromkeys(item.label for item in batch if item.label not in known))
        known.update(new)
        stream.append(Experience(len(stream), tuple(batch), new))
    return stream


def build_official_protocol(run: OfficialRun, root: Path | str | None = None, *,
                            scan: Core50Scan | None = None, classes: str = 'object',
                            experiences: int | None = None,
                            frames_per_experience: int | None = None,
                            test_frames_per_session: int | None = None,
                            size: int | None = None) -> Protocol:
    """Build the protocol of one official run (``core50_filelists.read_official_run``).

    Experience ``k`` is training batch ``k``: its frames grouped by object-session (one lesson
    each, frames in filelist order), learned together as one experience. The test frames are
    the run's test list. Every path and label is checked against the folder first
    (:func:`~cl_core_ros.data.core50_filelists.resolve_frames`).

    Args:
        run: the filelists read.
        root, scan, size: the CORe50 folder, as for :func:`build_protocol`.
        classes: ``object`` or ``category`` (category lists give the same classes).
        experiences: keep only the first N batches.
        frames_per_experience: evenly spaced frames kept per object-session of a batch (None:
            every frame the filelist names).
        test_frames_per_session: evenly spaced test frames kept per object-session (None: the
            whole test list).

    Raises:
        ProtocolError: a path that is not in the folder (or unusable), a label that disagrees
            with its path, a test frame outside the test sessions, bad option values.

    """
    classes = _parse_classes(classes)
    _check_counts(experiences=experiences, frames_per_experience=frames_per_experience,
                  test_frames_per_session=test_frames_per_session)
    scan = _scan(root, scan, None, size)
    try:
        frames = resolve_frames(run, scan)
    except FilelistError as exc:
        raise ProtocolError(str(exc)) from None
    batches = []
    available = scan.sequences()
    for filelist in run.batches:
        groups: dict[tuple[int, int], list[Core50Frame]] = {}
        for entry in filelist.entries:
            groups.setdefault(entry.key, []).append(frames[entry.path])
        batches.append([Lesson(s, o, class_label(o, classes), subsample(group,
                                                                        frames_per_experience),
                               len(available.get((s, o), group)))
                        for (s, o), group in groups.items()])
    stream = _experiences(batches)
    total = len(stream)
    if experiences is not None:
        stream = stream[:experiences]
    tests: dict[tuple[int, int], list[Core50Frame]] = {}
    for entry in run.test.entries:
        tests.setdefault(entry.key, []).append(frames[entry.path])
    test_frames = tuple(f for key in sorted(tests)
                        for f in subsample(tests[key], test_frames_per_session))
    lessons = [lesson for exp in stream for lesson in exp.lessons]
    all_lessons = [lesson for batch in batches for lesson in batch]
    protocol = Protocol(
        root=Path(scan.root), classes=classes, seed=run.run,
        train_sessions=tuple(sorted({lesson.session for lesson in all_lessons})),
        test_sessions=tuple(sorted({f.session for f in test_frames})),
        objects=tuple(sorted({lesson.object for lesson in all_lessons})),
        first_session=min(lesson.session for lesson in batches[0]),
        experiences=tuple(stream), test_frames=test_frames, total_experiences=total,
        frames_per_experience=frames_per_experience,
        test_frames_per_session=test_frames_per_session, scenario=run.scenario, origin=run)
    logger.info('protocol %s run %d: %d batches (%d lessons), %d classes, %d test frames',
                protocol.name, run.run, len(stream), len(lessons),
                len(protocol.class_labels), len(test_frames))
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


__all__ = ['build_generated_protocol', 'build_official_protocol', 'build_protocol',
           'CATEGORY_NAMES', 'class_label', 'CLASS_MODES', 'CORE50', 'Experience', 'Lesson',
           'Protocol', 'ProtocolError', 'subsample']
