"""CORe50's official NICv2 batch filelists: reading, checking, writing, and the stream structure.

The published NICv2-391 / 196 / 79 results (Lomonaco et al. 2019; Pellegrini et al. 2020) were
run on fixed batch filelists the authors ship, in two layouts:

``batches_filelists_NICv2.zip`` (CORe50 site; what Avalanche reads)::

    NIC_v2_391/run0/train_batch_00_filelist.txt ... train_batch_390_filelist.txt
    NIC_v2_391/run0/test_filelist.txt
    NIC_v2_391_cat/run0/...        (the same runs with category labels)

the authors' latent replay / AR1* code::

    batch_filelists/sIII_v2_391/run0/train_batch_00_filelist.txt ...
    batch_filelists/test_filelist_20.txt   (the reduced test list: every 20th test frame)

``NIC_v2_196``/``sIII_v2_196`` and ``..._79`` hold the other scenarios; runs are ``run0`` ..
``run9``. Batch numbers have at least two digits (``00`` .. ``99``, then ``100`` .. ``390``).
Every line is ``sS/oO/C_SS_OO_FFF.png LABEL``: the frame's path under ``core50_128x128`` and
its label, ``object - 1`` (0..49), or the category (0..9) in the ``_cat`` lists.

:func:`read_official_run` reads one run, :func:`resolve_frames` checks every line against a
scanned folder (the file must be there, usable, and its label must be the one its path gives:
a mismatch is reported with its file and line, never guessed). :func:`nicv2_structure` builds a
stream with the official structure from a folder and a seed (used when no filelists are given)
and :func:`write_official_run` writes any stream in the official format.

Nothing here imports torch or rclpy.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import hashlib
from pathlib import Path
import random
import re

from cl_core_ros.data.core50 import (
    category_of,
    Core50Frame,
    Core50Scan,
    FrameName,
    NUM_CATEGORIES,
    parse_frame_name,
    TEST_SESSIONS,
)

# scenario -> (batches on the full data set, object-sessions per batch after the first)
SCENARIOS = {'nicv2_391': (391, 1), 'nicv2_196': (196, 2), 'nicv2_79': (79, 5)}
LAYOUT_PREFIXES = ('NIC_v2_', 'sIII_v2_')
TEST_FILELIST = 'test_filelist.txt'
REDUCED_TEST_FILELIST = 'test_filelist_20.txt'
REDUCED_TEST_EVERY = 20
LABEL_KINDS = ('object', 'category')
FIRST_SESSION = 1
MAX_REPORTED = 20

_LINE_RE = re.compile(r'^s(\d+)/o(\d+)/(C_\d{2}_\d{2}_\d{3}\.png)\s+(-?\d+)$')
_BATCH_RE = re.compile(r'^train_batch_(\d{2,})_filelist\.txt$')
_RUN_RE = re.compile(r'^run(\d+)$')


class FilelistError(ValueError):
    """A filelist that cannot be read, or that disagrees with the data folder."""


def scenario_name(scenario: str) -> str:
    """Return the published name of a scenario: ``nicv2_391`` -> ``NICv2-391``."""
    check_scenario(scenario)
    return 'NICv2-' + scenario.split('_')[1]


def check_scenario(scenario: str) -> str:
    """Return ``scenario`` if it is one of :data:`SCENARIOS`; FilelistError otherwise."""
    if scenario not in SCENARIOS:
        raise FilelistError(f'scenario must be one of {sorted(SCENARIOS)}, got {scenario!r}')
    return scenario


def batch_file_name(index: int) -> str:
    """Return the file name of training batch ``index``: ``train_batch_07_filelist.txt``."""
    return f'train_batch_{index:02d}_filelist.txt'


def entry_label(obj: int, label_kind: str = 'object') -> int:
    """Return the label a filelist gives an object: ``obj - 1`` or its category."""
    if label_kind not in LABEL_KINDS:
        raise FilelistError(f'label kind must be one of {LABEL_KINDS}, got {label_kind!r}')
    return obj - 1 if label_kind == 'object' else category_of(obj)


@dataclass(frozen=True)
class FilelistEntry:
    """One line of a filelist: the frame it names and the label it gives."""

    line: int
    path: str
    label: int
    frame: FrameName

    @property
    def key(self) -> tuple[int, int]:
        """(session, object)."""
        return self.frame.session, self.frame.object


@dataclass(frozen=True)
class Filelist:
    """A parsed filelist: its entries in file order and the SHA-256 of its bytes."""

    path: Path
    entries: tuple[FilelistEntry, ...]
    sha256: str

    def object_sessions(self) -> list[tuple[int, int]]:
        """Return the (session, object) pairs in the order they first appear."""
        return list(dict.fromkeys(e.key for e in self.entries))


def parse_filelist(path: Path | str, label_kind: str = 'object') -> Filelist:
    """Read a filelist and check every line's syntax and label (see the module docstring).

    Raises:
        FilelistError: the file cannot be read, or lines that are not ``sS/oO/C_SS_OO_FFF.png
            LABEL``, whose folders disagree with the file name, or whose label is not the one
            the path gives (``object - 1``, or the category for ``label_kind='category'``);
            every bad line is named with its number (the first :data:`MAX_REPORTED`).

    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FilelistError(f'cannot read filelist {path}: {exc}') from None
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise FilelistError(f'{path}: not a text file ({exc})') from None
    entries, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        match = _LINE_RE.match(line)
        if match is None:
            problems.append(f'{path}:{number}: {line[:80]!r} is not "sS/oO/C_SS_OO_FFF.png '
                            'LABEL"')
            continue
        session, obj, name, label = match.groups()
        try:
            frame = parse_frame_name(name)
        except ValueError as exc:
            problems.append(f'{path}:{number}: {exc}')
            continue
        if (frame.session, frame.object) != (int(session), int(obj)):
            problems.append(f'{path}:{number}: {name} is filed under s{session}/o{obj}')
            continue
        expected = entry_label(frame.object, label_kind)
        if int(label) != expected:
            kind = 'object - 1' if label_kind == 'object' else 'category'
            problems.append(f'{path}:{number}: label {label} does not match '
                            f's{session}/o{obj}/{name} (its {kind} is {expected})')
            continue
        entries.append(FilelistEntry(number, f's{session}/o{obj}/{name}', int(label), frame))
    if problems:
        raise FilelistError(_problem_text(problems))
    if not entries:
        raise FilelistError(f'{path}: no entries')
    return Filelist(path, tuple(entries), hashlib.sha256(data).hexdigest())


def _problem_text(problems: Sequence[str]) -> str:
    shown = '\n  '.join(problems[:MAX_REPORTED])
    more = (f'\n  ... and {len(problems) - MAX_REPORTED} more'
            if len(problems) > MAX_REPORTED else '')
    return f'{len(problems)} bad filelist line(s):\n  {shown}{more}'


@dataclass(frozen=True)
class OfficialRun:
    """One run of a scenario: its training batches in order and its test list."""

    scenario: str
    run: int
    run_dir: Path
    label_kind: str
    batches: tuple[Filelist, ...]
    test: Filelist

    @property
    def name(self) -> str:
        """``NICv2-391``."""
        return scenario_name(self.scenario)

    def describe(self) -> dict:
        """Return a JSON-ready description with the SHA-256 of every file read."""
        return {
            'scenario': self.scenario, 'name': self.name, 'run': self.run,
            'run_dir': str(self.run_dir), 'label_kind': self.label_kind,
            'batches': len(self.batches),
            'batches_expected': SCENARIOS[self.scenario][0],
            'test_filelist': str(self.test.path), 'test_frames': len(self.test.entries),
            'sha256': {**{b.path.name: b.sha256 for b in self.batches},
                       f'test:{self.test.path.name}': self.test.sha256},
        }


def find_run_dir(filelists: Path | str, scenario: str, run: int,
                 label_kind: str = 'object') -> Path:
    """Find the folder of ``run`` under ``filelists`` (see the module docstring for layouts).

    ``filelists`` may be the folder holding ``NIC_v2_391`` / ``sIII_v2_391`` (or
    ``batch_filelists`` inside it), the scenario folder itself, or the run folder. Category
    lists (``_cat``) are used for ``label_kind='category'``. Raises FilelistError naming the
    places looked at.
    """
    check_scenario(scenario)
    base = Path(filelists)
    if not base.is_dir():
        raise FilelistError(f'filelists folder {base} is not a directory')
    number = scenario.split('_')[1]
    suffix = '_cat' if label_kind == 'category' else ''
    names = [f'{prefix}{number}{suffix}' for prefix in LAYOUT_PREFIXES]
    run_name = f'run{run}'
    candidates = []
    if (base / batch_file_name(0)).is_file() and _RUN_RE.match(base.name):
        candidates.append(base)
    for folder in (base, base / 'batch_filelists', base / 'batches_filelists'):
        if folder.name in names:
            candidates.append(folder / run_name)
        candidates += [folder / name / run_name for name in names]
    for candidate in candidates:
        if (candidate / batch_file_name(0)).is_file():
            return candidate
    looked = ', '.join(str(c) for c in dict.fromkeys(candidates))
    raise FilelistError(f'no {scenario_name(scenario)} run {run} ({batch_file_name(0)}) under '
                        f'{base}; looked in {looked}')


def find_test_filelist(run_dir: Path, filelists: Path | str) -> Path:
    """Return the run's ``test_filelist.txt``, else the reduced ``test_filelist_20.txt``.

    The reduced list is looked for next to the run folder and up to the filelists folder (the
    authors' ``batch_filelists/test_filelist_20.txt``). Raises FilelistError when neither is
    there.
    """
    base = Path(filelists).resolve()
    run_dir = Path(run_dir).resolve()
    folders = [run_dir, *run_dir.parents[:2],
               *(p for p in run_dir.parents if p == base or base in p.parents)]
    for folder in dict.fromkeys(folders):
        for name in (TEST_FILELIST, REDUCED_TEST_FILELIST):
            if (folder / name).is_file():
                return folder / name
    raise FilelistError(f'no {TEST_FILELIST} in {run_dir} nor {REDUCED_TEST_FILELIST} above '
                        'it: pass --test-filelist')


def read_official_run(filelists: Path | str, scenario: str, run: int, *,
                      test_filelist: Path | str | None = None,
                      label_kind: str = 'object') -> OfficialRun:
    """Read every training batch of a run (00, 01, ... until the first absent) and a test list.

    ``test_filelist`` overrides the test list (default :func:`find_test_filelist`). Raises
    FilelistError for a run that is not there, a gap in the batch numbering, or bad lines.
    """
    if isinstance(run, bool) or not isinstance(run, int) or run < 0:
        raise FilelistError(f'run must be an integer >= 0, got {run!r}')
    run_dir = find_run_dir(filelists, scenario, run, label_kind)
    numbers = sorted(int(m.group(1)) for p in run_dir.iterdir()
                     if (m := _BATCH_RE.match(p.name)))
    if numbers != list(range(len(numbers))):
        absent = sorted(set(range(max(numbers) + 1)) - set(numbers))
        raise FilelistError(f'{run_dir}: training batches {absent[:10]} are absent (batches '
                            f'must be numbered 00 .. {max(numbers):02d} without gaps)')
    problems, batches = [], []
    for index in numbers:
        try:
            batches.append(parse_filelist(run_dir / batch_file_name(index), label_kind))
        except FilelistError as exc:
            problems.append(str(exc))
    test_path = Path(test_filelist) if test_filelist is not None else \
        find_test_filelist(run_dir, filelists)
    try:
        test = parse_filelist(test_path, label_kind)
    except FilelistError as exc:
        problems.append(str(exc))
    if problems:
        raise FilelistError('\n'.join(problems))
    return OfficialRun(scenario, run, run_dir, label_kind, tuple(batches), test)


def resolve_frames(run: OfficialRun, scan: Core50Scan) -> dict[str, Core50Frame]:
    """Return the scanned frame of every path the run names; FilelistError for any not usable.

    A path must name a frame the scan indexed (present, well named, readable): files that are
    absent, or that the scan skipped (see its issues), are reported with their file and line.
    Test-list frames must belong to a test session, training frames to another one.
    """
    index = {f'{f.path.parent.parent.name}/{f.path.parent.name}/{f.path.name}': f
             for f in scan.frames}
    skipped = {str(i.path.relative_to(scan.root)): i for i in scan.issues
               if _inside(i.path, scan.root)}
    problems = []
    found: dict[str, Core50Frame] = {}
    for filelist, is_test in [*((b, False) for b in run.batches), (run.test, True)]:
        for entry in filelist.entries:
            frame = index.get(entry.path)
            if frame is None:
                issue = skipped.get(entry.path)
                why = f'skipped by the scan ({issue.kind}: {issue.detail})' if issue else \
                    f'not in {scan.root}'
                problems.append(f'{filelist.path}:{entry.line}: {entry.path} {why}')
                continue
            if (entry.frame.session in TEST_SESSIONS) != is_test:
                role = 'test list' if is_test else 'training batch'
                problems.append(f'{filelist.path}:{entry.line}: {entry.path} is in a {role} '
                                f'but s{entry.frame.session} is '
                                f'{"not " if is_test else ""}a test session')
                continue
            found[entry.path] = frame
    if problems:
        raise FilelistError(_problem_text(problems))
    return found


def _inside(path: Path, root: Path) -> bool:
    try:
        Path(path).relative_to(root)
    except ValueError:
        return False
    return True


# --- the official structure, for streams built from a seed -----------------------------------

def first_batch_objects(objects: Iterable[int], count: int = NUM_CATEGORIES) -> list[int]:
    """Return the first batch's objects: the first object of every category (o1, o6, ...).

    When ``count`` is above the number of categories present, further objects follow in id
    order (the second of every category first); below it, the first ``count`` categories.
    """
    present = sorted(set(objects))
    by_rank: dict[int, list[int]] = {}
    for obj in present:
        rank = sum(1 for o in present if category_of(o) == category_of(obj) and o < obj)
        by_rank.setdefault(rank, []).append(obj)
    chosen = [obj for rank in sorted(by_rank) for obj in by_rank[rank]]
    return sorted(chosen[:count])


def nicv2_structure(object_sessions: Iterable[tuple[int, int]], *, seed: int,
                    per_batch: int = 1, first_session: int = FIRST_SESSION,
                    first_objects: int = NUM_CATEGORIES) -> list[list[tuple[int, int]]]:
    """Order training object-sessions as the official NICv2 runs do; return the batches.

    Batch 0 is ``first_session`` (s1) of :func:`first_batch_objects`, trained as one batch.
    Then every object's remaining sessions come in session order (s1, s2, s4, ...: an object
    not in batch 0 enters through its first session), the objects' sequences interleaved at
    random (a uniformly random merge, seeded), so new objects arrive at irregular positions;
    consecutive object-sessions are grouped ``per_batch`` at a time (1: NICv2-391, 2:
    NICv2-196, 5: NICv2-79; the last batch may be smaller).
    """
    if per_batch < 1:
        raise FilelistError(f'per_batch must be >= 1, got {per_batch}')
    pairs = sorted(set(object_sessions))
    in_first = sorted(o for s, o in pairs if s == first_session)
    if not in_first:
        raise FilelistError(f'no object in the first session s{first_session}')
    first = first_batch_objects(in_first, first_objects)
    queues: dict[int, list[tuple[int, int]]] = {}
    for session, obj in pairs:
        if session == first_session and obj in first:
            continue
        queues.setdefault(obj, []).append((session, obj))
    rng = random.Random(seed)
    order: list[tuple[int, int]] = []
    remaining = {obj: list(queue) for obj, queue in sorted(queues.items())}
    while remaining:
        objects = sorted(remaining)
        weights = [len(remaining[o]) for o in objects]
        obj = rng.choices(objects, weights=weights)[0]
        order.append(remaining[obj].pop(0))
        if not remaining[obj]:
            del remaining[obj]
    batches = [[(first_session, o) for o in first]]
    batches += [order[i:i + per_batch] for i in range(0, len(order), per_batch)]
    return batches


# --- writing ---------------------------------------------------------------------------------

def filelist_lines(frames: Iterable, label_kind: str = 'object') -> list[str]:
    """Return the official lines of frames (objects with ``session``, ``object``, ``frame``)."""
    lines = []
    for f in frames:
        name = FrameName(f.session, f.object, f.frame).file_name
        lines.append(f's{f.session}/o{f.object}/{name} {entry_label(f.object, label_kind)}')
    return lines


def write_filelist(path: Path | str, frames: Iterable, label_kind: str = 'object') -> Path:
    """Write frames as a filelist (one ``sS/oO/C_SS_OO_FFF.png LABEL`` line each)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(line + '\n' for line in filelist_lines(frames, label_kind)),
                    encoding='utf-8')
    return path


def write_official_run(filelists: Path | str, scenario: str, run: int,
                       batches: Sequence[Sequence], test_frames: Sequence, *,
                       layout_prefix: str = LAYOUT_PREFIXES[0],
                       label_kind: str = 'object') -> Path:
    """Write one run: ``<prefix><N>/run<run>/train_batch_XX_filelist.txt`` and test lists.

    ``batches`` holds the frames of every batch; the run folder gets ``test_filelist.txt``
    (all ``test_frames``) and the scenario folder's parent ``test_filelist_20.txt`` (every
    20th of them, as the authors reduced theirs). Returns the run folder.
    """
    check_scenario(scenario)
    if layout_prefix not in LAYOUT_PREFIXES:
        raise FilelistError(f'layout prefix must be one of {LAYOUT_PREFIXES}')
    base = Path(filelists)
    suffix = '_cat' if label_kind == 'category' else ''
    run_dir = base / f'{layout_prefix}{scenario.split("_")[1]}{suffix}' / f'run{run}'
    for index, frames in enumerate(batches):
        write_filelist(run_dir / batch_file_name(index), frames, label_kind)
    tests = list(test_frames)
    write_filelist(run_dir / TEST_FILELIST, tests, label_kind)
    write_filelist(base / REDUCED_TEST_FILELIST, tests[::REDUCED_TEST_EVERY], label_kind)
    return run_dir


__all__ = ['batch_file_name', 'check_scenario', 'entry_label', 'Filelist', 'FilelistEntry',
           'FilelistError', 'filelist_lines', 'find_run_dir', 'find_test_filelist',
           'first_batch_objects', 'LABEL_KINDS', 'nicv2_structure', 'OfficialRun',
           'parse_filelist', 'read_official_run', 'REDUCED_TEST_FILELIST', 'resolve_frames',
           'SCENARIOS', 'scenario_name', 'TEST_FILELIST', 'write_filelist',
           'write_official_run']
