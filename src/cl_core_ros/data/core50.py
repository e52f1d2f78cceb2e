"""The CORe50 folder layout: names, labels, scanning, and a small look-alike data set.

CORe50 (Lomonaco and Maltoni, 2017) has 50 hand-held objects in 10 categories, each filmed in 11
sessions at 20 fps (about 300 frames, 15 s). The 128x128 crops are stored as::

    core50_128x128/s{1..11}/o{1..50}/C_SS_OO_FFF.png

(``SS`` session, ``OO`` object, both two digits; ``FFF`` the frame, three digits from 000), and the
full-size frames as ``core50_350x350/...`` with the same naming. Objects are numbered from 1 and
the category is ``(object - 1) // 5``; sessions 3, 7 and 10 are the test sessions.

:func:`scan_core50` indexes such a tree and never guesses: files that are missing, extra (names
that are not CORe50 names, or names that disagree with their folder) or unreadable are skipped and
reported as :class:`ScanIssue` entries, so no frame is ever given a wrong label silently.

:func:`make_core50_like` writes a small data set in exactly this layout from real photos bundled
with scikit-image (no downloads), for tests and demos where CORe50 itself is not available.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
import logging
from pathlib import Path
import re
import struct

import cv2
import numpy as np

from cl_core_ros.data import photos

logger = logging.getLogger(__name__)

NUM_SESSIONS = 11
NUM_OBJECTS = 50
OBJECTS_PER_CATEGORY = 5
NUM_CATEGORIES = NUM_OBJECTS // OBJECTS_PER_CATEGORY
TEST_SESSIONS = (3, 7, 10)
TRAIN_SESSIONS = tuple(s for s in range(1, NUM_SESSIONS + 1) if s not in TEST_SESSIONS)
FPS = 20.0
FRAME_PERIOD_NS = 50_000_000
LAYOUT_DIRS = {128: 'core50_128x128', 350: 'core50_350x350'}

FRAME_NAME_RE = re.compile(r'^C_(\d{2})_(\d{2})_(\d{3})\.png$')
SESSION_DIR_RE = re.compile(r'^s([1-9]\d*)$')
OBJECT_DIR_RE = re.compile(r'^o([1-9]\d*)$')

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'

ISSUE_KINDS = ('missing', 'gap', 'extra', 'mismatch', 'unreadable', 'size')
# Kinds the real data set shows although nothing is wrong with it: its sequences have holes
# in the frame numbering (e.g. s3/o1 has 299 frames, starting at ``C_03_01_001.png``), so the
# 128x128 set holds 164,866 frames, not 165,000.
TOLERATED_KINDS = ('gap',)
VERIFY_MODES = ('none', 'header', 'decode')


class Core50Error(ValueError):
    """A CORe50 name, folder or image that cannot be used."""


def _check_session(session: int) -> int:
    if not isinstance(session, (int, np.integer)) or not 1 <= session <= NUM_SESSIONS:
        raise Core50Error(f'session must be an integer in 1..{NUM_SESSIONS}, got {session!r}')
    return int(session)


def _check_object(obj: int) -> int:
    if not isinstance(obj, (int, np.integer)) or not 1 <= obj <= NUM_OBJECTS:
        raise Core50Error(f'object must be an integer in 1..{NUM_OBJECTS}, got {obj!r}')
    return int(obj)


def _check_frame(frame: int) -> int:
    if not isinstance(frame, (int, np.integer)) or not 0 <= frame <= 999:
        raise Core50Error(f'frame must be an integer in 0..999, got {frame!r}')
    return int(frame)


def category_of(obj: int) -> int:
    """Return the category (0..9) of a CORe50 object (1..50): ``(obj - 1) // 5``."""
    return (_check_object(obj) - 1) // OBJECTS_PER_CATEGORY


def is_test_session(session: int) -> bool:
    """Return True for the CORe50 test sessions (s3, s7, s10)."""
    return _check_session(session) in TEST_SESSIONS


def frame_file_name(session: int, obj: int, frame: int) -> str:
    """Return the CORe50 file name of a frame, e.g. ``C_01_01_000.png``."""
    return (f'C_{_check_session(session):02d}_{_check_object(obj):02d}'
            f'_{_check_frame(frame):03d}.png')


def session_dir_name(session: int) -> str:
    """Return the folder name of a session, e.g. ``s1``."""
    return f's{_check_session(session)}'


def object_dir_name(obj: int) -> str:
    """Return the folder name of an object, e.g. ``o1``."""
    return f'o{_check_object(obj)}'


@dataclass(frozen=True, order=True)
class FrameName:
    """Session, object and frame of a CORe50 file name."""

    session: int
    object: int
    frame: int

    @property
    def category(self) -> int:
        """Category of the object (0..9)."""
        return category_of(self.object)

    @property
    def file_name(self) -> str:
        """File name in the CORe50 convention."""
        return frame_file_name(self.session, self.object, self.frame)


def parse_frame_name(name: str) -> FrameName:
    """Parse ``C_SS_OO_FFF.png`` into a :class:`FrameName` (:class:`Core50Error` if invalid)."""
    match = FRAME_NAME_RE.match(name)
    if match is None:
        raise Core50Error(f'{name!r} is not a CORe50 frame name (C_SS_OO_FFF.png)')
    session, obj, frame = (int(g) for g in match.groups())
    try:
        return FrameName(_check_session(session), _check_object(obj), _check_frame(frame))
    except Core50Error as exc:
        raise Core50Error(f'{name!r}: {exc}') from None


@dataclass(frozen=True, order=True)
class Core50Frame:
    """One frame file of the data set, with the labels its folder and name agree on."""

    session: int
    object: int
    frame: int
    path: Path = field(compare=False)

    @property
    def category(self) -> int:
        """Category of the object (0..9)."""
        return category_of(self.object)

    @property
    def is_test(self) -> bool:
        """True when the frame belongs to a test session."""
        return self.session in TEST_SESSIONS

    def read(self) -> np.ndarray:
        """Read the frame's file as RGB uint8 (H, W, 3); :class:`Core50Error` on failure."""
        return read_frame(self.path)


@dataclass(frozen=True)
class ScanIssue:
    """A problem found while scanning: the file or folder was skipped (or, for size, kept).

    ``kind`` is one of ``missing`` (a session or object folder that should be there, or one
    without usable frames), ``gap`` (frame numbers absent inside a sequence, or before its first
    frame: the real data set has such holes, see :data:`TOLERATED_KINDS`), ``extra`` (an entry
    that is not part of the layout), ``mismatch`` (a file name that disagrees with its folders),
    ``unreadable`` (not a decodable PNG) or ``size`` (a readable image of unexpected size: kept).
    """

    kind: str
    path: Path
    detail: str

    def __str__(self) -> str:
        return f'{self.kind}: {self.path}: {self.detail}'


@dataclass
class Core50Scan:
    """Result of :func:`scan_core50`: the usable frames and every issue found."""

    root: Path
    size: int | None
    frames: list[Core50Frame]
    issues: list[ScanIssue]

    @property
    def sessions(self) -> list[int]:
        """Sessions that have at least one usable frame."""
        return sorted({f.session for f in self.frames})

    @property
    def objects(self) -> list[int]:
        """Objects that have at least one usable frame."""
        return sorted({f.object for f in self.frames})

    def sequences(self) -> dict[tuple[int, int], list[Core50Frame]]:
        """Return the frames grouped by (session, object), each list sorted by frame number."""
        groups: dict[tuple[int, int], list[Core50Frame]] = {}
        for frame in sorted(self.frames):
            groups.setdefault((frame.session, frame.object), []).append(frame)
        return groups

    def issues_of(self, kind: str) -> list[ScanIssue]:
        """Return the issues of one kind."""
        if kind not in ISSUE_KINDS:
            raise ValueError(f'unknown issue kind {kind!r}; expected one of {ISSUE_KINDS}')
        return [i for i in self.issues if i.kind == kind]

    def blocking_issues(self) -> list[ScanIssue]:
        """Return the issues other than :data:`TOLERATED_KINDS` (what ``--strict`` fails on)."""
        return [i for i in self.issues if i.kind not in TOLERATED_KINDS]

    def summary(self) -> str:
        """Return a one-paragraph human-readable summary."""
        counts = {k: len(self.issues_of(k)) for k in ISSUE_KINDS}
        text = (f'{len(self.frames)} frames in {len(self.sequences())} sequences '
                f'({len(self.sessions)} sessions, {len(self.objects)} objects) under {self.root}')
        problems = ', '.join(f'{n} {k}' for k, n in counts.items() if n)
        return text + (f'; issues: {problems}' if problems else '; no issues')


def locate_core50(root: Path | str, size: int | None = None) -> tuple[Path, int | None]:
    """Find the layout folder: ``root`` itself or ``root/core50_128x128`` (or ``_350x350``).

    Returns the folder holding ``s1 .. s11`` and the frame size its name declares (None when the
    folder has another name). ``size`` picks the layout when ``root`` holds both.
    """
    root = Path(root)
    if not root.is_dir():
        raise Core50Error(f'CORe50 root {root} is not a directory')
    if size is not None and size not in LAYOUT_DIRS:
        raise Core50Error(f'size must be one of {sorted(LAYOUT_DIRS)}, got {size!r}')
    for layout_size, name in LAYOUT_DIRS.items():
        if root.name == name and size in (None, layout_size):
            return root, layout_size
    candidates = [(s, root / n) for s, n in LAYOUT_DIRS.items()
                  if (root / n).is_dir() and size in (None, s)]
    if len(candidates) == 1:
        return candidates[0][1], candidates[0][0]
    if len(candidates) > 1:
        raise Core50Error(f'{root} holds several layouts {[str(p) for _, p in candidates]}: '
                          'choose one with size= (--size 128 or --size 350)')
    if any(SESSION_DIR_RE.match(p.name) for p in root.iterdir() if p.is_dir()):
        return root, size
    raise Core50Error(f'no CORe50 layout under {root}: expected {LAYOUT_DIRS[128]}/s1/o1/'
                      'C_01_01_000.png or s1/o1/... directly')


def _png_header(path: Path) -> tuple[int, int]:
    """Return (width, height) from a PNG header; raise Core50Error if it is not a PNG."""
    try:
        with path.open('rb') as stream:
            head = stream.read(33)
    except OSError as exc:
        raise Core50Error(f'cannot read: {exc}') from None
    if len(head) == 0:
        raise Core50Error('empty file')
    if not head.startswith(PNG_SIGNATURE):
        raise Core50Error('not a PNG file (bad signature)')
    if len(head) < 33 or head[12:16] != b'IHDR':
        raise Core50Error('truncated PNG header')
    width, height = struct.unpack('>II', head[16:24])
    return width, height


def decode_frame(data: bytes | np.ndarray, source: Path | str = '<bytes>') -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, ...) to RGB uint8 (H, W, 3).

    Raises :class:`Core50Error` (naming ``source``) when the bytes cannot be decoded.
    """
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if buffer.size == 0:
        raise Core50Error(f'{source}: empty file')
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise Core50Error(f'{source}: cannot decode image')
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def is_plain_rgb_png(data: bytes | np.ndarray) -> bool:
    """Return True if the bytes start like an 8-bit RGB PNG (what CORe50 ships)."""
    head = bytes(data[:26])
    return (len(head) == 26 and head.startswith(PNG_SIGNATURE) and head[12:16] == b'IHDR'
            and head[24] == 8 and head[25] == 2)


def read_frame(path: Path | str) -> np.ndarray:
    """Read one frame as an RGB uint8 array (H, W, 3); raise :class:`Core50Error` on failure."""
    path = Path(path)
    if not path.is_file():
        raise Core50Error(f'{path}: missing file')
    return decode_frame(np.fromfile(path, dtype=np.uint8), path)


def _numbered_dirs(parent: Path, pattern: re.Pattern, limit: int, what: str,
                   issues: list[ScanIssue]) -> dict[int, Path]:
    """Return {number: path} of the sub folders named like ``pattern``; report the rest."""
    found: dict[int, Path] = {}
    for entry in sorted(parent.iterdir()):
        match = pattern.match(entry.name)
        if match is None or not entry.is_dir():
            issues.append(ScanIssue('extra', entry, f'not a {what} folder ({what[0]}1..'
                                                    f'{what[0]}{limit}): skipped'))
            continue
        number = int(match.group(1))
        if number > limit:
            issues.append(ScanIssue('extra', entry, f'{what} {number} is out of range '
                                                    f'1..{limit}: skipped'))
            continue
        found[number] = entry
    return found


def _selection(values: Iterable[int] | None, limit: int, what: str) -> set[int] | None:
    if values is None:
        return None
    chosen = {int(v) for v in values}
    bad = sorted(v for v in chosen if not 1 <= v <= limit)
    if bad:
        raise Core50Error(f'{what} {bad} out of range 1..{limit}')
    return chosen


def _frame_gaps(numbers: list[int]) -> list[tuple[int, int]]:
    """Return the (first, last) ranges missing from 0..max(numbers) (numbers sorted)."""
    gaps = []
    expected = 0
    for n in numbers:
        if n > expected:
            gaps.append((expected, n - 1))
        expected = n + 1
    return gaps


def scan_core50(root: Path | str, *, sessions: Iterable[int] | None = None,
                objects: Iterable[int] | None = None, size: int | None = None,
                verify: str = 'header') -> Core50Scan:
    """Index a CORe50 tree; skip and report everything that does not fit the layout.

    Args:
        root: the layout folder (``core50_128x128``) or the folder that contains it.
        sessions: sessions to index (1..11); None for all present. A requested session or
            object folder that is absent is reported as missing.
        objects: objects to index (1..50); None for all present. With None, an object present in
            some sessions but absent from another scanned session is reported as missing.
        size: 128 or 350 to choose the layout; also the frame size checked against headers.
        verify: ``none`` (names only), ``header`` (PNG signature and size, cheap) or ``decode``
            (decode every image: slow on the full set).

    Returns:
        A :class:`Core50Scan` with the usable frames sorted by (session, object, frame).

    """
    if verify not in VERIFY_MODES:
        raise ValueError(f'verify must be one of {VERIFY_MODES}, got {verify!r}')
    layout_root, layout_size = locate_core50(root, size)
    wanted_sessions = _selection(sessions, NUM_SESSIONS, 'sessions')
    wanted_objects = _selection(objects, NUM_OBJECTS, 'objects')
    issues: list[ScanIssue] = []
    frames: list[Core50Frame] = []

    session_dirs = _numbered_dirs(layout_root, SESSION_DIR_RE, NUM_SESSIONS, 'session', issues)
    if wanted_sessions is not None:
        for session in sorted(wanted_sessions - session_dirs.keys()):
            issues.append(ScanIssue('missing', layout_root / session_dir_name(session),
                                    'requested session folder is absent'))
        session_dirs = {s: p for s, p in session_dirs.items() if s in wanted_sessions}

    object_dirs: dict[int, dict[int, Path]] = {}
    for session, session_dir in sorted(session_dirs.items()):
        dirs = _numbered_dirs(session_dir, OBJECT_DIR_RE, NUM_OBJECTS, 'object', issues)
        if wanted_objects is not None:
            dirs = {o: p for o, p in dirs.items() if o in wanted_objects}
        object_dirs[session] = dirs
    expected_objects = wanted_objects
    if expected_objects is None:
        expected_objects = set().union(*(d.keys() for d in object_dirs.values()))
    for session, dirs in sorted(object_dirs.items()):
        for obj in sorted(expected_objects - dirs.keys()):
            reason = ('requested object folder is absent' if wanted_objects is not None
                      else 'object folder is absent (present in other sessions)')
            issues.append(ScanIssue('missing', session_dirs[session] / object_dir_name(obj),
                                    reason))

    for session, dirs in sorted(object_dirs.items()):
        for obj, object_dir in sorted(dirs.items()):
            numbers = []  # every well-named frame file, usable or not: gaps are absent files
            usable = 0
            for entry in sorted(object_dir.iterdir()):
                try:
                    name = parse_frame_name(entry.name)
                except Core50Error as exc:
                    issues.append(ScanIssue('extra', entry, f'{exc}: skipped'))
                    continue
                if not entry.is_file():
                    issues.append(ScanIssue('extra', entry, 'not a regular file: skipped'))
                    continue
                if (name.session, name.object) != (session, obj):
                    issues.append(ScanIssue(
                        'mismatch', entry,
                        f'name says session {name.session} object {name.object} but the file '
                        f'is in s{session}/o{obj}: skipped (label would be ambiguous)'))
                    continue
                numbers.append(name.frame)
                if verify == 'header':
                    try:
                        width, height = _png_header(entry)
                    except Core50Error as exc:
                        issues.append(ScanIssue('unreadable', entry, f'{exc}: skipped'))
                        continue
                    if layout_size is not None and (width, height) != (layout_size,) * 2:
                        issues.append(ScanIssue(
                            'size', entry, f'{width}x{height}, expected {layout_size}x'
                                           f'{layout_size} for this layout: kept'))
                elif verify == 'decode':
                    try:
                        image = read_frame(entry)
                    except Core50Error as exc:
                        issues.append(ScanIssue('unreadable', entry, f'{exc}: skipped'))
                        continue
                    if layout_size is not None and image.shape[:2] != (layout_size,) * 2:
                        issues.append(ScanIssue(
                            'size', entry, f'{image.shape[1]}x{image.shape[0]}, expected '
                                           f'{layout_size}x{layout_size}: kept'))
                frames.append(Core50Frame(session, obj, name.frame, entry))
                usable += 1
            if not usable:
                issues.append(ScanIssue('missing', object_dir, 'no usable frames'))
            for first, last in _frame_gaps(sorted(numbers)):
                span = (frame_file_name(session, obj, first) if first == last else
                        f'{frame_file_name(session, obj, first)} .. '
                        f'{frame_file_name(session, obj, last)}')
                issues.append(ScanIssue('gap', object_dir,
                                        f'{last - first + 1} frame(s) absent: {span}'))
    scan = Core50Scan(layout_root, layout_size, sorted(frames), issues)
    for issue in issues:
        (logger.info if issue.kind in TOLERATED_KINDS else logger.warning)('CORe50 scan: %s',
                                                                           issue)
    logger.info('CORe50 scan: %s', scan.summary())
    return scan


# --- a small CORe50-like data set from real photos ------------------------------------------

# Photos scikit-image ships inside its wheel (loading them never downloads anything), one per
# object; see cl_core_ros.data.photos.
PHOTO_NAMES = ('chelsea', 'coffee', 'astronaut', 'rocket', 'motorcycle', 'retina',
               'immunohistochemistry', 'hubble_deep_field', 'camera', 'coins', 'moon', 'horse',
               'clock', 'brick', 'grass', 'gravel', 'page', 'text', 'cell')
# Photos whose blurred crops make session backgrounds (indoor and outdoor looking scenes).
BACKGROUND_NAMES = ('coffee', 'grass', 'brick', 'rocket', 'gravel', 'chelsea', 'hubble_deep_field',
                    'motorcycle', 'camera', 'astronaut', 'moon')
# Object views inside one photo: (centre x, centre y, side) as fractions of the short side.
_VIEWS = ((0.5, 0.5, 0.8), (0.3, 0.3, 0.5), (0.7, 0.7, 0.5), (0.7, 0.3, 0.5), (0.3, 0.7, 0.5))

def load_photo(name: str) -> np.ndarray:
    """Return one bundled photo at its own size as RGB uint8 (cached; no downloads)."""
    if name not in PHOTO_NAMES:
        raise KeyError(f'unknown photo {name!r}; choose from {PHOTO_NAMES}')
    return photos.load_photo(name, max_side=None)


def object_source(obj: int) -> tuple[str, int]:
    """Return (photo name, view index) that :func:`make_core50_like` uses for an object.

    Objects 1..19 each get their own photo; further objects reuse the photos with a different,
    mostly disjoint view (region) of them, so every object still looks different.
    """
    index = _check_object(obj) - 1
    return PHOTO_NAMES[index % len(PHOTO_NAMES)], index // len(PHOTO_NAMES)


def _object_texture(obj: int, work: int) -> np.ndarray:
    """Return the object's square texture at ``work`` pixels, with a reflected margin."""
    name, view = object_source(obj)
    photo = load_photo(name)
    h, w = photo.shape[:2]
    short = min(h, w)
    cx, cy, side = _VIEWS[view % len(_VIEWS)]
    cx = (w - short) / 2 + cx * short
    cy = (h - short) / 2 + cy * short
    half = side * short / 2
    # 25% margin each side so per-session view shifts and per-frame pans stay inside real pixels
    x0, y0 = int(round(cx - 1.5 * half)), int(round(cy - 1.5 * half))
    x1, y1 = int(round(cx + 1.5 * half)), int(round(cy + 1.5 * half))
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        photo = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    crop = photo[y0:y1, x0:x1]
    return cv2.resize(crop, (int(1.5 * work), int(1.5 * work)), interpolation=cv2.INTER_AREA)


def _session_background(session: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Return a blurred real-scene background (float32 RGB, 1.25 x size) for a session."""
    photo = load_photo(BACKGROUND_NAMES[(session - 1) % len(BACKGROUND_NAMES)])
    h, w = photo.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 0.9))
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    big = int(size * 1.25)
    crop = cv2.resize(photo[y0:y0 + side, x0:x0 + side], (big, big), interpolation=cv2.INTER_AREA)
    crop = cv2.GaussianBlur(crop.astype(np.float32), (0, 0), sigmaX=size / 24)
    tint = rng.uniform(0.6, 1.2, size=3).astype(np.float32)
    return np.clip(crop * tint, 0, 255)


@dataclass(frozen=True)
class _SessionLook:
    """Per (session, object) appearance: where the object sits and how it is lit."""

    scale: float        # object side on the canvas / canvas side
    angle: float        # degrees
    centre: tuple[float, float]  # canvas fraction
    view_shift: tuple[float, float]  # texture fraction
    zoom: float         # texture zoom around the view centre
    gain: float         # brightness
    cast: tuple[float, float, float]
    flip: bool


@dataclass(frozen=True)
class _Motion:
    """Smooth hand-held motion: sum of slow sinusoids with random phases."""

    amplitude: np.ndarray   # (5,): dx, dy (canvas fraction), angle (deg), scale, pan
    frequency: np.ndarray   # (5,) Hz
    phase: np.ndarray       # (5,)

    def at(self, t: float) -> np.ndarray:
        return self.amplitude * np.sin(2 * np.pi * self.frequency * t + self.phase)


def _soft_square(side: int, feather: float) -> np.ndarray:
    """Return a float32 mask, 1 inside a square of ``side`` with rounded, feathered edges."""
    mask = np.zeros((side, side), np.float32)
    inset = max(1, int(side * 0.04))
    cv2.rectangle(mask, (inset, inset), (side - 1 - inset, side - 1 - inset), 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=max(0.5, feather))


def _render_frame(texture: np.ndarray, mask: np.ndarray, background: np.ndarray,
                  look: _SessionLook, offset: np.ndarray, size: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Compose one frame: the object texture warped over the moving background."""
    dx, dy, dangle, dscale, pan = offset
    tex = texture.shape[0]
    work = mask.shape[0]
    # texture -> canvas: rotate and scale around the view centre, then place on the canvas
    view_cx = tex / 2 + (look.view_shift[0] + pan) * work
    view_cy = tex / 2 + (look.view_shift[1] - pan / 2) * work
    scale = look.scale * (1 + dscale) * size / (work / look.zoom)
    angle = look.angle + dangle
    to_canvas = cv2.getRotationMatrix2D((view_cx, view_cy), angle, scale)
    cx = (look.centre[0] + dx) * size
    cy = (look.centre[1] + dy) * size
    to_canvas[:, 2] += (cx - view_cx, cy - view_cy)
    obj = cv2.warpAffine(texture, to_canvas, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101).astype(np.float32)
    # the mask is the (work / zoom) square around the view centre in texture coordinates
    mask_side = work / look.zoom
    to_mask = np.array([[mask_side / work, 0, view_cx - mask_side / 2],
                        [0, mask_side / work, view_cy - mask_side / 2]], np.float64)
    mask_canvas = to_canvas @ np.vstack([to_mask, [0, 0, 1]])
    alpha = cv2.warpAffine(mask, mask_canvas, (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)[:, :, None]
    # hand-held camera: the background drifts a little with the object
    big = background.shape[0]
    shift = np.array([[1, 0, -(big - size) / 2 + 0.3 * dx * size],
                      [0, 1, -(big - size) / 2 + 0.3 * dy * size]], np.float64)
    back = cv2.warpAffine(background, shift, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)
    if look.flip:
        obj = obj[:, ::-1]
        alpha = alpha[:, ::-1]
    obj = obj * np.asarray(look.cast, np.float32)
    frame = alpha * obj + (1 - alpha) * back
    frame = frame * look.gain + rng.normal(0, 2.0, frame.shape).astype(np.float32)
    return np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def _ids(value: int | Iterable[int], limit: int, what: str) -> list[int]:
    if isinstance(value, (int, np.integer)):
        if not 1 <= value <= limit:
            raise Core50Error(f'{what}: a count must be in 1..{limit}, got {value}')
        return list(range(1, int(value) + 1))
    ids = sorted({int(v) for v in value})
    if not ids or not all(1 <= v <= limit for v in ids):
        raise Core50Error(f'{what} must be ids in 1..{limit}, got {ids}')
    return ids


def make_core50_like(root: Path | str, *, sessions: int | Sequence[int] = (1, 2, 3),
                     objects: int | Sequence[int] = (1, 2, 3), frames: int = 20,
                     size: int = 128, seed: int = 0) -> Path:
    """Write a small data set in the CORe50 layout and naming from real bundled photos.

    Every object is a different real photo (scikit-image's bundled ones; objects past the 19th
    reuse a photo with another region of it). Each session changes the view (crop, zoom,
    rotation, placement), the lighting and the background; inside a sequence the object moves
    slowly and smoothly, as if held in a hand and filmed at 20 fps, with a little sensor noise.

    Args:
        root: folder that receives ``core50_{size}x{size}/s{S}/o{O}/C_SS_OO_FFF.png``.
        sessions: a count (1..n) or session ids (1..11).
        objects: a count (1..n) or object ids (1..50).
        frames: frames per (session, object), numbered from 000.
        size: frame side in pixels: 128 (the usual crops) or 350 (the full-size layout).
        seed: makes the data set reproducible (same seed, same bytes).

    Returns:
        The layout folder (``root/core50_{size}x{size}``).

    """
    if size not in LAYOUT_DIRS:
        raise Core50Error(f'size must be one of {sorted(LAYOUT_DIRS)}, got {size!r}')
    if not 1 <= frames <= 1000:
        raise Core50Error(f'frames must be in 1..1000, got {frames}')
    session_ids = _ids(sessions, NUM_SESSIONS, 'sessions')
    object_ids = _ids(objects, NUM_OBJECTS, 'objects')
    layout = Path(root) / LAYOUT_DIRS[size]
    work = size  # texture pixels per object side at zoom 1
    mask = _soft_square(work, feather=work / 40)
    textures = {obj: _object_texture(obj, work) for obj in object_ids}
    for session in session_ids:
        session_rng = np.random.default_rng([seed, session])
        background = _session_background(session, size, session_rng)
        session_gain = session_rng.uniform(0.75, 1.2)
        for obj in object_ids:
            rng = np.random.default_rng([seed, session, obj])
            look = _SessionLook(
                scale=float(rng.uniform(0.55, 0.8)),
                angle=float(rng.uniform(-25, 25)),
                centre=(float(rng.uniform(0.42, 0.58)), float(rng.uniform(0.42, 0.58))),
                view_shift=(float(rng.uniform(-0.1, 0.1)), float(rng.uniform(-0.1, 0.1))),
                zoom=float(rng.uniform(0.9, 1.15)),
                gain=float(session_gain * rng.uniform(0.9, 1.1)),
                cast=tuple(float(c) for c in rng.uniform(0.92, 1.08, size=3)),
                flip=bool(rng.random() < 0.3),
            )
            motion = _Motion(
                amplitude=np.array([0.05, 0.05, 8.0, 0.06, 0.04]) * rng.uniform(0.5, 1.0, 5),
                frequency=rng.uniform(0.15, 0.5, 5),
                phase=rng.uniform(0, 2 * np.pi, 5),
            )
            folder = layout / session_dir_name(session) / object_dir_name(obj)
            folder.mkdir(parents=True, exist_ok=True)
            for frame in range(frames):
                offset = motion.at(frame / FPS)
                image = _render_frame(textures[obj], mask, background, look, offset, size, rng)
                path = folder / frame_file_name(session, obj, frame)
                if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
                    raise OSError(f'cannot write {path}')
    logger.info('wrote a CORe50-like set: %d sessions x %d objects x %d frames under %s',
                len(session_ids), len(object_ids), frames, layout)
    return layout
