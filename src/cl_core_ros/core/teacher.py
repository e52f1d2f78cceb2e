"""The teaching workflow of a robot, without ROS: gather, learn, consolidate, store.

:class:`Teacher` owns a :class:`~cl_core_ros.core.learner.Learner` and a
:class:`~cl_core_ros.core.state_store.StateStore` and implements what the learner node's
services promise:

- ``label(name, n)`` starts gathering ``n`` frames of an object; frames offered with
  :meth:`Teacher.offer_frame` are encoded to latents as they arrive (at most ``gather_rate`` per
  second), so learning can start the moment gathering ends;
- ``start_learning()`` runs the fast update and returns only after the new state is durably
  committed; if the commit fails, the in-memory model goes back to the stored version;
- ``label(name, n, add_to_batch=True)`` while gathering keeps the frames gathered so far and
  gathers another label into the same lesson: ``start_learning()`` then learns every label of
  the batch jointly, as one multi-class experience
  (:meth:`~cl_core_ros.core.learner.Learner.learn_experience`);
- ``consolidate()`` runs the deep update; a lesson arriving meanwhile interrupts it (teaching has
  priority) and it is retried later;
- ``forget``, ``rename``, ``reset``, ``rollback``, ``save`` are committed the same way;
- ``export_classes`` makes a lesson pack of some classes, ``import_pack`` takes one in and
  answers after the durable commit (a rollback undoes it, like any change).

Every method returns an :class:`Outcome` (success flag and a message for the user) instead of
raising for wrong-state calls or bad input: a node answering a service must never die.
Thread safety: ``offer_frame``/``predict`` may run on other threads than the calls above.
"""

import contextlib
from dataclasses import dataclass, field
import enum
import logging
import threading
import time

import numpy as np
import torch

from cl_core_ros.core.labels import normalize_label
from cl_core_ros.core.learner import Latents, Learner
from cl_core_ros.core.lesson_pack import LessonPack, PackError
from cl_core_ros.core.state_store import FilesystemReport, StateStore, StateStoreError

log = logging.getLogger(__name__)


class Phase(enum.IntEnum):
    """What the teacher is doing (values match cl_core_ros/msg/LearnerStatus)."""

    IDLE = 0
    GATHERING = 1
    LEARNING = 2
    CONSOLIDATING = 3


@dataclass
class Outcome:
    """Result of a teaching call: success, a message for the user, and details."""

    success: bool
    message: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Status:
    """A snapshot of the teacher for status messages and diagnostics."""

    phase: Phase
    gathering_label: str
    frames_gathered: int
    frames_target: int
    num_classes: int
    model_version: int
    replay_fill: int
    replay_capacity: int
    pending_experiences: int
    last_training_seconds: float
    last_consolidation_seconds: float
    state_version: int
    last_consolidation_time: float | None


@dataclass
class _Gathering:
    label: str
    target: int
    class_id: int
    is_new: bool
    latents: list = field(default_factory=list)
    last_time: float = -1e9
    started: float = field(default_factory=time.monotonic)


@contextlib.contextmanager
def _torch_threads(n: int):
    """Limit torch's intra-op threads for work on this thread (the setting is per thread).

    The deep consolidation runs with fewer threads than there are cores so that the
    inference thread keeps a core and predictions keep flowing meanwhile.
    """
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Teacher:
    """Gather frames, learn lessons, consolidate and keep every acknowledged change on disk."""

    def __init__(self, learner: Learner, store: StateStore, *, gather_rate: float = 5.0,
                 default_frames: int = 100, max_frames: int = 1000, min_frames: int = 5,
                 consolidation_threads: int = 1):
        self.learner = learner
        self.store = store
        self.gather_rate = gather_rate
        self.default_frames = default_frames
        self.max_frames = max_frames
        self.min_frames = min_frames
        self.consolidation_threads = consolidation_threads
        self._lock = threading.RLock()         # guards phase and gathering
        self._work = threading.Lock()          # one training/commit at a time
        self._stop_consolidation = threading.Event()
        self._closing = False
        self._phase = Phase.IDLE
        self._gathering: _Gathering | None = None
        self._batch: list[_Gathering] = []  # earlier labels of a multi-label lesson
        self._state_version = 0
        self._last_training = 0.0
        self._last_consolidation = 0.0
        self._last_consolidation_time: float | None = None
        self.load_problems: list[str] = []
        # Before anything is gathered: a directory that cannot store lessons stops the start.
        self.filesystem: FilesystemReport = store.probe()
        self._load_stored()

    # ----- state on disk -------------------------------------------------------------------
    def _load_stored(self) -> None:
        """Load the newest valid stored version (if any) into the learner."""
        result = self.store.load_latest()
        self.load_problems = [str(p) for p in result.problems]
        for problem in self.load_problems:
            log.warning('state: %s', problem)
        if result.info is not None:
            self.learner.load_state_dict(result.state)
            for note in self.learner.load_notes:
                log.warning('state: %s', note)
            self.load_problems += self.learner.load_notes
            self._state_version = result.info.version
            log.info('state: loaded version %d (%d classes)', result.info.version,
                     len(self.learner.labels))

    def _commit(self, change: str, *, changed: bool = True) -> Outcome | None:
        """Commit the learner state; on failure restore the stored one and return the error.

        ``changed=False``: the learner holds exactly the stored state (a plain save), so a
        failed commit leaves it as it is (and its model version too).
        """
        try:
            info = self.store.commit(self.learner.state_dict(), change=change,
                                     classes=[n for _, n in self.learner.labels.items()])
        except (StateStoreError, OSError) as exc:
            if changed:
                log.error('state: commit of %r failed: %s; restoring the stored version',
                          change, exc)
                self._restore_stored()
            else:
                log.error('state: commit of %r failed: %s', change, exc)
            return Outcome(False, f'could not store the change ({exc}); nothing was changed')
        self._state_version = info.version
        return None

    def _restore_stored(self) -> None:
        result = self.store.load_latest()
        if result.info is not None:
            self.learner.load_state_dict(result.state)
        else:
            self.learner.reset()

    # ----- teaching ---------------------------------------------------------------------------
    def label(self, name: str, num_frames: int = 0, add_to_batch: bool = False) -> Outcome:
        """Start gathering frames of ``name`` (a new or a known class).

        With ``add_to_batch`` while a label is being gathered, that label's frames are kept
        (at least ``min_frames`` needed) and ``name`` is gathered next into the same lesson;
        ``start_learning`` learns them all jointly. Without it, labelling while gathering is
        refused.
        """
        n = num_frames or self.default_frames
        if not 1 <= n <= self.max_frames:
            return Outcome(False, f'num_frames must be in 1..{self.max_frames}, got {n}')
        try:
            clean = self.learner.labels.validate(name)
        except ValueError as exc:
            return Outcome(False, f'invalid label: {exc}')
        with self._lock:
            batch: list[_Gathering] = []
            if self._phase == Phase.GATHERING:
                g = self._gathering
                if not add_to_batch:
                    return Outcome(False, f"already gathering '{g.label}' ({len(g.latents)}/"
                                          f'{g.target}); call start_learning first (or '
                                          'label with add_to_batch to learn both together)')
                if len(g.latents) < self.min_frames:
                    return Outcome(False, f"only {len(g.latents)} frames of '{g.label}' "
                                          f'gathered so far (at least {self.min_frames} needed '
                                          'before the next label of the batch)')
                batch = [*self._batch, g]
            if self._phase == Phase.LEARNING:
                return Outcome(False, 'busy learning the previous lesson; try again')
            known = self.learner.labels.get(clean)
            in_batch = next((b for b in batch if b.label == clean), None)
            new_in_batch = {b.label for b in batch if b.is_new}
            if known is None and in_batch is None and len(self.learner.labels) + len(
                    new_in_batch) >= self.learner.config.max_classes:
                return Outcome(False, f'the model already knows the maximum of '
                                      f'{self.learner.config.max_classes} classes')
            taken = {cid for cid, _ in self.learner.labels.items()} | {
                b.class_id for b in batch if b.is_new}
            if known is not None:
                class_id = known
            elif in_batch is not None:
                class_id = in_batch.class_id
            else:
                class_id = min(i for i in range(len(taken) + 1) if i not in taken)
            self._batch = batch
            self._gathering = _Gathering(clean, n, class_id, known is None)
            if self._phase == Phase.CONSOLIDATING:
                self._stop_consolidation.set()
            self._phase = Phase.GATHERING
        kind = 'new class' if known is None else 'known class'
        similar = self.learner.labels.similar(clean) if known is None else None
        note = (f"; note: the known label '{similar}' differs only in case or width"
                if similar else '')
        joined = f' (label {len(batch) + 1} of one lesson)' if batch else ''
        return Outcome(True, f"gathering {n} frames of '{clean}' ({kind} {class_id}){joined}"
                       f"{note}",
                       {'class_id': class_id, 'is_new_class': known is None})

    def wants_frame(self, now: float | None = None) -> bool:
        """Return True if a frame offered now would be gathered."""
        g = self._gathering
        if g is None or self._phase != Phase.GATHERING or len(g.latents) >= g.target:
            return False
        now = time.monotonic() if now is None else now
        return now - g.last_time >= 1.0 / self.gather_rate

    def offer_frame(self, image: np.ndarray, now: float | None = None) -> bool:
        """Encode and keep ``image`` (RGB uint8) if gathering wants it; return True if kept."""
        return self._keep(self.learner.preprocess(image)[None], now) is not None

    def observe(self, image: np.ndarray, now: float | None = None):
        """Handle one camera frame: gather it if wanted, and return (prediction, gathered).

        The backbone runs once per frame: a gathered frame's latents also give its prediction.
        """
        frame = self.learner.preprocess(image)[None]
        latents = self._keep(frame, now)
        if latents is not None:
            return self.learner.predict_latents(latents, smooth=True)[0], True
        return self.learner.predict(frame, smooth=True)[0], False

    def _keep(self, frame, now: float | None):
        """Encode ``frame`` and add it to the lesson being gathered, if one wants it now."""
        now = time.monotonic() if now is None else now
        if not self.wants_frame(now):
            return None
        latents = self.learner.encode(frame)
        with self._lock:
            g = self._gathering
            if g is None or self._phase != Phase.GATHERING or len(g.latents) >= g.target:
                return None
            g.latents.append(latents)
            g.last_time = now
            return latents

    def cancel_gathering(self, reason: str) -> Outcome:
        """Drop the frames being gathered."""
        with self._lock:
            if self._gathering is None:
                return Outcome(False, 'not gathering')
            label = ', '.join(b.label for b in [*self._batch, self._gathering])
            self._gathering = None
            self._batch = []
            self._phase = Phase.IDLE
        log.warning("gathering of '%s' cancelled: %s", label, reason)
        return Outcome(True, f"gathering of '{label}' cancelled: {reason}")

    def gathering_stalled(self, timeout: float) -> bool:
        """Return True if gathering has had no new frame for ``timeout`` seconds."""
        g = self._gathering
        if g is None or self._phase != Phase.GATHERING:
            return False
        last = g.last_time if g.latents else g.started
        return time.monotonic() - last > timeout

    def start_learning(self) -> Outcome:
        """Learn the gathered frames (fast update) and store the result durably."""
        with self._lock:
            g = self._gathering
            if self._phase != Phase.GATHERING or g is None:
                return Outcome(False, 'nothing gathered: call label_object first')
            if len(g.latents) < self.min_frames:
                return Outcome(False, f"only {len(g.latents)} frames of '{g.label}' gathered "
                                      f'so far (at least {self.min_frames} needed): is the '
                                      f'camera publishing?')
            self._phase = Phase.LEARNING
            lessons = [*self._batch, g]
            self._gathering = None
            self._batch = []
            self._stop_consolidation.set()
        labels = ', '.join(dict.fromkeys(b.label for b in lessons))
        try:
            with self._work:
                self._stop_consolidation.clear()
                if len(lessons) == 1:
                    report = self.learner.learn(g.label, Latents.cat(g.latents))
                else:
                    report = self.learner.learn_experience(
                        [(b.label, Latents.cat(b.latents)) for b in lessons])
                failed = self._commit(f"learn '{labels}' ({report.frames_used} frames)")
                if failed:
                    return failed
                self._last_training = report.seconds
        except (ValueError, RuntimeError) as exc:
            log.error("learning '%s' failed: %s", labels, exc)
            self._restore_stored()
            return Outcome(False, f"learning '{labels}' failed: {exc}")
        finally:
            with self._lock:
                self._phase = Phase.IDLE
        return Outcome(True, f"learned '{labels}' from {report.frames_used} frames in "
                             f'{report.seconds:.3f} s', {
                                 'label': labels, 'frames_used': report.frames_used,
                                 'training_seconds': report.seconds,
                                 'model_version': self.learner.model_version,
                                 'state_version': self._state_version})

    def consolidate(self, force: bool = False) -> Outcome:
        """Run the deep consolidation over pending lessons; interrupted by a new lesson."""
        pending = self.learner.pending_experiences
        if pending == 0 and not force:
            return Outcome(False, 'nothing to consolidate (no new lessons)')
        if len(self.learner.labels) == 0:
            return Outcome(False, 'nothing to consolidate (no classes yet)')
        with self._lock:
            if self._closing:
                return Outcome(False, 'shutting down')
            if self._phase != Phase.IDLE:
                return Outcome(False, f'busy ({self._phase.name.lower()}); try again later')
            self._phase = Phase.CONSOLIDATING
            self._stop_consolidation.clear()
        try:
            with self._work, _torch_threads(self.consolidation_threads):
                report = self.learner.consolidate(should_stop=self._stop_consolidation.is_set)
                if report.stopped:
                    if self._closing:
                        return Outcome(False, 'interrupted: shutting down (the lessons stay '
                                              'stored and pending)')
                    return Outcome(False, 'interrupted by a new lesson; will run again later')
                failed = self._commit(f'consolidate {pending} lessons')
                if failed:
                    return failed
                self._last_consolidation = report.seconds
                self._last_consolidation_time = time.time()
        except (ValueError, RuntimeError) as exc:
            log.error('consolidation failed: %s', exc)
            self._restore_stored()
            return Outcome(False, f'consolidation failed: {exc}')
        finally:
            with self._lock:
                if self._phase == Phase.CONSOLIDATING:
                    self._phase = Phase.IDLE
        return Outcome(True, f'consolidated {pending} lessons in {report.seconds:.1f} s', {
            'experiences': pending, 'seconds': report.seconds,
            'model_version': self.learner.model_version, 'state_version': self._state_version})

    def _change(self, what: str, action, *, changes_model: bool = True) -> Outcome:
        """Apply a management change under the work lock and commit it."""
        with self._lock:
            if self._phase in (Phase.LEARNING,):
                return Outcome(False, 'busy learning; try again')
            if self._phase == Phase.CONSOLIDATING:
                self._stop_consolidation.set()
        with self._work:
            self._stop_consolidation.clear()
            try:
                action()
            except (ValueError, KeyError) as exc:
                return Outcome(False, _reason(exc))
            failed = self._commit(what, changed=changes_model)
            if failed:
                return failed
        return Outcome(True, what, {'model_version': self.learner.model_version,
                                    'state_version': self._state_version})

    def forget(self, name: str) -> Outcome:
        """Forget a class (head row masked, CWR* state cleared, replay purged)."""
        return self._change(f"forget '{_shown(name)}'", lambda: self.learner.forget(name))

    def rename(self, name: str, new_name: str) -> Outcome:
        """Rename a class."""
        return self._change(f"rename '{_shown(name)}' to '{_shown(new_name)}'",
                            lambda: self.learner.rename(name, new_name))

    def reset(self) -> Outcome:
        """Forget everything (stored as a new version: a rollback can undo it)."""
        with self._lock:
            self._gathering = None
            self._batch = []
            if self._phase == Phase.GATHERING:
                self._phase = Phase.IDLE
        return self._change('reset', self.learner.reset)

    def save(self) -> Outcome:
        """Store the current state as a new version."""
        return self._change('save', lambda: None, changes_model=False)

    def rollback(self, version: int = 0) -> Outcome:
        """Make an earlier stored version current (stored as a new version).

        A rollback that fails changes nothing: neither the model (nor its version) nor the
        store's current version.
        """
        with self._lock:
            if self._phase != Phase.IDLE:
                return Outcome(False, f'busy ({self._phase.name.lower()}); try again later')
        with self._work:
            if version == 0:
                older = [v.version for v in self.store.list_versions()
                         if v.valid and v.version < self._state_version]
                if not older:
                    return Outcome(False, 'no earlier version to roll back to')
                version = max(older)
            try:
                # Loaded into the learner only once the store has made it current: a store
                # that refuses (no such version, damaged, another model, disk full) leaves
                # both as they were.
                info = self.store.rollback(version)
            except (StateStoreError, ValueError, OSError) as exc:
                return Outcome(False, f'rollback to version {version} failed: {exc}')
            try:
                self.learner.load_state_dict(self.store.load_latest().state)
            except (StateStoreError, ValueError, OSError, KeyError, RuntimeError) as exc:
                # The learner is unchanged (load_state_dict swaps in only a complete state);
                # store what it holds again so that store and model agree.
                failed = self._commit(f'undo rollback to version {version}', changed=False)
                reason = f'rollback to version {version} failed: {exc}'
                return Outcome(False, reason if failed is None
                               else f'{reason}; {failed.message}')
            self._state_version = info.version
        return Outcome(True, f'rolled back to version {version} (now version {info.version})',
                       {'model_version': self.learner.model_version,
                        'state_version': self._state_version})

    # ----- fleet: lesson packs -----------------------------------------------------------------
    def export_classes(self, labels: list[str] | None, origin: str) -> Outcome:
        """Make a lesson pack of ``labels`` (all when empty); ``details['pack']`` holds it."""
        try:
            pack = self.learner.export_classes(labels or None, origin=origin)
        except (KeyError, ValueError) as exc:
            return Outcome(False, f'cannot export: {str(exc).strip(chr(39) + chr(34))}')
        return Outcome(True, f'exported {", ".join(map(repr, pack.labels))}', {'pack': pack})

    def import_pack(self, pack: LessonPack, pack_id: str, on_clash: str = 'refuse', *,
                    once: bool = False) -> Outcome:
        """Import a verified lesson pack and store the result durably before answering.

        ``once``: skip a pack imported before (see ``Learner.import_pack``).

        ``details``: 'report' (:class:`~cl_core_ros.core.learner.ImportReport`), versions;
        'busy' when it was not tried because a lesson is being learned. A refused pack (other
        backbone, label clash under 'refuse', ...) changes nothing.
        """
        with self._lock:
            if self._phase == Phase.LEARNING:
                return Outcome(False, 'busy learning; try again', {'busy': True})
            if self._phase == Phase.CONSOLIDATING:
                self._stop_consolidation.set()
        with self._work:
            self._stop_consolidation.clear()
            try:
                report = self.learner.import_pack(pack, pack_id, on_clash=on_clash, once=once)
            except PackError as exc:
                return Outcome(False, f'pack from {pack.origin} refused: {exc}')
            except (ValueError, RuntimeError, KeyError) as exc:
                log.error('import of pack %s failed: %s', pack_id[:12], exc)
                self._restore_stored()
                return Outcome(False, f'import failed: {exc}; nothing was changed')
            details = {'report': report, 'model_version': self.learner.model_version,
                       'state_version': self._state_version}
            if not report.changed:
                why = '; '.join(f"'{n}': {r}" for n, r in report.skipped)
                return Outcome(True, f'nothing new in the pack from {pack.origin} ({why})',
                               details)
            names = ', '.join(f"'{label}'" + (f' ({action})' if action != 'new' else '')
                              for _, label, _, action in report.imported)
            failed = self._commit(f'import {names} from {pack.origin}')
            if failed:
                return failed
            details['state_version'] = self._state_version
        return Outcome(True, f'imported {names} from {pack.origin} in {report.seconds:.2f} s',
                       details)

    def shut_down(self) -> None:
        """Stop a running consolidation and refuse new ones (the process is stopping).

        Lessons not yet consolidated stay stored as pending and are consolidated after the
        next start.
        """
        with self._lock:
            self._closing = True
            self._stop_consolidation.set()

    # ----- inference and status ---------------------------------------------------------------
    def status(self) -> Status:
        """Return a snapshot for the status topic and diagnostics."""
        with self._lock:
            g = self._gathering
            learner = self.learner
            counters = learner.status()
            return Status(
                phase=self._phase, gathering_label=g.label if g else '',
                frames_gathered=len(g.latents) if g else 0, frames_target=g.target if g else 0,
                num_classes=len(learner.labels), model_version=learner.model_version,
                replay_fill=counters['fast_buffer'],
                replay_capacity=counters['fast_buffer_size'],
                pending_experiences=learner.pending_experiences,
                last_training_seconds=self._last_training,
                last_consolidation_seconds=self._last_consolidation,
                state_version=self._state_version,
                last_consolidation_time=self._last_consolidation_time)


def _reason(exc: Exception) -> str:
    """Return the message of ``exc`` (a KeyError's own text, not its repr in quotes)."""
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _shown(name) -> str:
    """Return a label as messages show it: its normal form (anything else as it came)."""
    return normalize_label(name) if isinstance(name, str) else str(name)
