"""Durable, versioned, checksummed store of learner states; no pickle, no rclpy.

On-disk layout of a state directory (mode 0700, files 0600)::

    CURRENT                 'v000042' and a newline: the commit point, replaced atomically
    .lock                   flock(2) target that serializes writers (and clean-up)
    v000041/                an older version (the last ``keep`` versions are kept)
    v000042/
        tensors.safetensors every tensor of the state (see state_codec)
        state.json          the structure and plain values, referring to the tensors
        manifest.json       format, version, UTC time, change, classes, model signature,
                            sha256 and size of the two files above, and its own sha256

A commit writes a new version into ``.tmp-v000043-<pid>-<random>/``, fsyncs every file and the
directory, renames it to ``v000043`` (atomic), fsyncs the state directory, then replaces
``CURRENT`` (write a temporary file, fsync, ``os.replace``, fsync the directory). Only then does
:meth:`StateStore.commit` return: an acknowledged lesson survives kill -9 and power loss. A
version directory is therefore either complete or absent; leftovers of an interrupted commit
(``.tmp-*``, ``CURRENT.tmp-*``, a version newer than CURRENT) or prune (``.del-*``) are removed,
and reported, by the next load or commit.

Loading verifies sizes and checksums against the manifest and parses only data formats
(safetensors, strict JSON), so a state directory from someone else cannot execute code. A damaged
version is reported (which version, which file, why) and skipped for the previous one.

Filesystems: :meth:`StateStore.probe` (the learner calls it at start, before any lesson) does
every step of a commit once and refuses a directory that cannot store lessons, naming the
filesystem. Behaviours that differ from a local disk are handled by a policy per failure (see
:mod:`cl_core_ros.core.filesystems`): the lock file is opened read-write (NFS), ``lockf`` or an
in-process lock where there are no ``flock`` locks, directory fsync EINVAL tolerated (CIFS,
9p), CURRENT replaced by unlink + rename where a rename over a file is refused, EXDEV renames
of old versions (overlayfs) removed in place. Each weaker guarantee is logged once and listed
by :meth:`StateStore.filesystem_report`.

Model compatibility: a store built with a ``model_signature`` never loads a version whose manifest
records a different one. :meth:`StateStore.load_latest` skips such versions with a problem message
naming each differing field, and falls back to the newest compatible valid version; if no
compatible version exists but valid versions for another model do, it raises
:class:`IncompatibleStateError` rather than returning "no state", so that a node started with the
wrong model does not silently start from scratch over (and later prune away) that knowledge.
"""

from collections.abc import Iterator
import contextlib
from dataclasses import dataclass, field
import datetime
import errno
import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path
import re
import secrets
import shutil
import stat
import threading
import time
from typing import Any

from cl_core_ros.core.filesystems import family_note, mount_of
from cl_core_ros.core.state_codec import (
    CodecLimits,
    decode_state,
    dump_state,
    load_tensors,
    parse_json,
    StateCodecError,
)

_LOG = logging.getLogger(__name__)

MANIFEST_FORMAT = 'cl_core_ros.state_manifest'
MANIFEST_FORMAT_VERSION = 1
TENSOR_FILE = 'tensors.safetensors'
TREE_FILE = 'state.json'
MANIFEST_FILE = 'manifest.json'
CURRENT_FILE = 'CURRENT'
LOCK_FILE = '.lock'
_DATA_FILES = (TENSOR_FILE, TREE_FILE)
_VERSION_FILES = frozenset((*_DATA_FILES, MANIFEST_FILE))
_VERSION_RE = re.compile(r'v(\d{6,})')
_TMP_PREFIX = '.tmp-'
_TRASH_PREFIX = '.del-'
_CURRENT_TMP_PREFIX = 'CURRENT.tmp-'
_SHA256_RE = re.compile(r'[0-9a-f]{64}')
_MANIFEST_KEYS = frozenset((
    'format', 'format_version', 'version', 'created_utc', 'change', 'classes',
    'model_signature', 'files', 'manifest_sha256'))


class StateStoreError(Exception):
    """A state store operation failed; the message says what, where and why.

    Attributes:
        path: the file or directory involved, when there is one.
        errno: the OS error number (e.g. ``errno.ENOSPC``), when an OS call failed.

    """

    def __init__(self, message: str, *, path: Path | None = None,
                 os_error: OSError | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = os_error.errno if os_error is not None else None


class IncompatibleStateError(StateStoreError):
    """Stored state was written for another model (backbone, input size, layers...).

    Attributes:
        version: the version refused.
        differences: one message per differing model-signature field.

    """

    def __init__(self, message: str, *, version: int, differences: list[str]) -> None:
        super().__init__(message)
        self.version = version
        self.differences = differences


@dataclass(frozen=True)
class StoreLimits:
    """Sanity limits on what is read back (and written).

    Attributes:
        codec: tensor count, nesting depth and node limits of the state tree.
        max_manifest_bytes: largest manifest.json.
        max_tree_bytes: largest state.json.
        max_tensor_file_bytes: largest tensors.safetensors.

    """

    codec: CodecLimits = field(default_factory=CodecLimits)
    max_manifest_bytes: int = 1024 * 1024
    max_tree_bytes: int = 256 * 1024 * 1024
    max_tensor_file_bytes: int = 8 * 1024 ** 3


@dataclass(frozen=True)
class VersionInfo:
    """What is known about one stored version.

    Attributes:
        version: the version number (directory ``v%06d``).
        path: the version directory.
        created_utc: ISO 8601 UTC time of the commit ('' if the manifest is unreadable).
        change: the change description given to commit.
        classes: class names at that version.
        model_signature: the model signature recorded in the manifest.
        size_bytes: total size of the version's files.
        valid: every file present, sizes and checksums match, contents parse.
        compatible: the model signature matches the store's (always True without one).
        problem: why the version is invalid or incompatible, else None.
        current: CURRENT names this version.

    """

    version: int
    path: Path
    created_utc: str = ''
    change: str = ''
    classes: tuple[str, ...] = ()
    model_signature: dict[str, Any] | None = None
    size_bytes: int = 0
    valid: bool = False
    compatible: bool = True
    problem: str | None = None
    current: bool = False

    @property
    def name(self) -> str:
        """Directory name of the version, e.g. ``v000042``."""
        return version_name(self.version)


@dataclass
class LoadResult:
    """Outcome of :meth:`StateStore.load_latest`.

    Attributes:
        state: the loaded state, or None when no valid version exists (start fresh).
        info: the loaded version, or None.
        problems: everything found on the way (damaged or refused versions, leftovers
            cleaned up, a bad CURRENT pointer), one readable message each.

    """

    state: dict[str, Any] | None
    info: VersionInfo | None
    problems: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        """Whether a state was loaded."""
        return self.state is not None


@dataclass
class VerifyReport:
    """Outcome of :meth:`StateStore.verify` (read-only: nothing is repaired).

    Attributes:
        versions: every version directory, checked in full.
        current: the version CURRENT names, or None.
        problems: every problem found, one message each.

    """

    versions: list[VersionInfo]
    current: int | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        """Whether nothing at all is wrong."""
        return not self.problems


@dataclass(frozen=True)
class FilesystemReport:
    """What the state store can promise on its directory's filesystem (:meth:`StateStore.probe`).

    Attributes:
        path: the state directory.
        fs_type: the filesystem type ('ext4', 'nfs4', 'cifs', 'fuse.sshfs'...; 'unknown').
        family: its family (see :mod:`cl_core_ros.core.filesystems`).
        mount: a description of the mount (type, source, mount point), '' if unknown.
        locking: 'flock', 'lockf' (POSIX record locks) or 'process' (writers are serialized
            in this process only: another process must not write the same directory).
        directory_sync: whether fsync of a directory works (False: the server or host makes
            renames durable, not this client).
        atomic_replace: whether CURRENT is replaced by one atomic rename (False: unlink, then
            rename; a crash in between loads the newest valid version, the same one).
        weaker: one message per guarantee that is weaker than on a local disk; empty = full.

    """

    path: Path
    fs_type: str
    family: str
    mount: str
    locking: str
    directory_sync: bool
    atomic_replace: bool
    weaker: tuple[str, ...]

    @property
    def guarantee(self) -> str:
        """'full' or 'weaker'."""
        return 'weaker' if self.weaker else 'full'

    def summary(self) -> str:
        """One line for logs and diagnostics."""
        text = f'state directory {self.path} on {self.mount or self.fs_type}: '
        if not self.weaker:
            return text + 'full durability guarantee'
        return text + 'weaker guarantee: ' + '; '.join(self.weaker)


class _InvalidVersionError(Exception):
    def __init__(self, number: int, file: str, reason: str,
                 manifest: dict[str, Any] | None = None) -> None:
        where = f'{version_name(number)}/{file}' if file else version_name(number)
        super().__init__(f'{where}: {reason}')
        self.manifest = manifest


def default_state_dir() -> Path:
    """Return ``$ROS_HOME/cl_core_ros/state``, or ``~/.ros/cl_core_ros/state`` without ROS_HOME."""
    ros_home = os.environ.get('ROS_HOME')
    base = Path(ros_home).expanduser() if ros_home else Path.home() / '.ros'
    return base / 'cl_core_ros' / 'state'


def version_name(number: int) -> str:
    """Directory name of a version number: ``v000042``."""
    return f'v{number:06d}'


def parse_version_name(name: str) -> int | None:
    """Return the number of a canonical version directory name, else None."""
    match = _VERSION_RE.fullmatch(name)
    if match is None or version_name(int(match.group(1))) != name:
        return None
    return int(match.group(1))


def _os_reason(error: OSError) -> str:
    code = errno.errorcode.get(error.errno, str(error.errno)) if error.errno else 'error'
    return f'{code}: {error.strerror or error}'


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Directory fsync refused as unsupported (CIFS, 9p/drvfs, some FUSE): tolerated, diagnosed.
_DIR_SYNC_UNSUPPORTED = frozenset((errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS))
# flock(2) refused because the filesystem has no (working) locks (NFS without lockd, FUSE).
_NO_LOCKS = frozenset((errno.ENOLCK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS,
                       errno.EINVAL))
# rename(2) over an existing file refused by some SMB servers.
_NO_REPLACE = frozenset((errno.EEXIST, errno.EACCES, errno.EPERM, errno.EBUSY, errno.ENOTSUP,
                         errno.EOPNOTSUPP))
# Not writable at all: the learner refuses to start.
_NOT_WRITABLE = frozenset((errno.EROFS, errno.EACCES, errno.EPERM))
_NFS_SILLY_PREFIX = '.nfs'  # an NFS client renames a removed file that is still open


def _write_file(path: Path, data: bytes) -> None:
    """Create ``path`` (must not exist), write all of ``data`` and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_file(path: Path, *, max_bytes: int, expected_size: int | None = None) -> bytes:
    """Read a regular file (not through a symlink), refusing one of an unexpected size.

    Raises:
        OSError: the file cannot be opened or read.
        ValueError: not a regular file, or its size is wrong or above ``max_bytes``.

    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError('not a regular file')
        if expected_size is not None and info.st_size != expected_size:
            hint = 'truncated or replaced' if info.st_size < expected_size else 'grown or replaced'
            raise ValueError(f'size is {info.st_size} bytes but the manifest says '
                             f'{expected_size} ({hint})')
        if info.st_size > max_bytes:
            raise ValueError(f'size {info.st_size} bytes is above the limit of {max_bytes}')
        chunks, total = [], 0
        while total <= info.st_size:
            chunk = os.read(fd, min(info.st_size + 1 - total, 64 * 1024 * 1024) or 1)
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total != info.st_size:
            raise ValueError(f'changed while being read ({total} bytes read, '
                             f'{info.st_size} expected)')
        return b''.join(chunks)
    finally:
        os.close(fd)


def _manifest_digest(manifest: dict[str, Any]) -> str:
    body = {key: value for key, value in manifest.items() if key != 'manifest_sha256'}
    canonical = json.dumps(body, sort_keys=True, separators=(',', ':'), ensure_ascii=True)
    return hashlib.sha256(canonical.encode('ascii')).hexdigest()


def _normalize_signature(signature: dict[str, Any] | None) -> dict[str, Any] | None:
    if signature is None:
        return None
    try:
        normalized = json.loads(json.dumps(signature, allow_nan=False, sort_keys=True))
    except (TypeError, ValueError) as error:
        raise ValueError(f'model_signature must be JSON data: {error}') from error
    if not isinstance(normalized, dict):
        raise ValueError('model_signature must be a dict')
    return normalized


def signature_differences(stored: dict[str, Any] | None,
                          expected: dict[str, Any] | None,
                          defaults: dict[str, Any] | None = None) -> list[str]:
    """Describe how a stored model signature differs from the expected one (empty: same).

    ``expected`` None accepts anything. ``defaults`` gives the value of a field that a stored
    signature lacks because it was written before the field existed (e.g. a setting whose
    earlier behaviour is one of its values now).
    """
    if expected is None:
        return []
    if not isinstance(stored, dict):
        return ['the stored version records no model signature, this model is '
                f'{json.dumps(expected, sort_keys=True)}']
    stored = {**{k: v for k, v in (defaults or {}).items() if k in expected}, **stored}
    differences = []
    for key in sorted(set(stored) | set(expected)):
        if key not in stored:
            differences.append(f"model signature field '{key}' is missing in the stored "
                               f'version; this model has {expected[key]!r}')
        elif key not in expected:
            differences.append(f"model signature field '{key}' = {stored[key]!r} in the stored "
                               'version is unknown to this model')
        elif stored[key] != expected[key] or type(stored[key]) is not type(expected[key]):
            differences.append(f"model signature field '{key}' differs: stored "
                               f'{stored[key]!r}, this model {expected[key]!r}')
    return differences


def _check_manifest(number: int, manifest: Any) -> dict[str, Any]:
    def bad(reason: str) -> _InvalidVersionError:
        return _InvalidVersionError(number, MANIFEST_FILE, reason)

    if not isinstance(manifest, dict) or manifest.get('format') != MANIFEST_FORMAT:
        raise bad('not a cl_core_ros state manifest')
    format_version = manifest.get('format_version')
    if not isinstance(format_version, int) or isinstance(format_version, bool):
        raise bad('format_version is missing or not an integer')
    if format_version > MANIFEST_FORMAT_VERSION:
        raise bad(f'written by a newer cl_core_ros (format_version {format_version}, this code '
                  f'reads {MANIFEST_FORMAT_VERSION})')
    if format_version != MANIFEST_FORMAT_VERSION:
        raise bad(f'unsupported format_version {format_version}')
    if set(manifest) != _MANIFEST_KEYS:
        raise bad(f'unexpected or missing keys: {sorted(set(manifest) ^ _MANIFEST_KEYS)}')
    if manifest['manifest_sha256'] != _manifest_digest(manifest):
        raise bad('the manifest does not match its own checksum (corrupted or edited)')
    if manifest['version'] != number:
        raise bad(f'the manifest is for version {manifest["version"]!r}, not {number}')
    classes = manifest['classes']
    if (not isinstance(manifest['created_utc'], str) or not isinstance(manifest['change'], str)
            or not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)
            or not isinstance(manifest['model_signature'], (dict, type(None)))):
        raise bad('a field has the wrong type')
    files = manifest['files']
    if not isinstance(files, dict) or set(files) != set(_DATA_FILES):
        raise bad(f'must list exactly {list(_DATA_FILES)}')
    for name, spec in files.items():
        if (not isinstance(spec, dict) or set(spec) != {'sha256', 'size'}
                or not isinstance(spec['sha256'], str) or not _SHA256_RE.fullmatch(spec['sha256'])
                or not isinstance(spec['size'], int) or spec['size'] < 0):
            raise bad(f'malformed entry for {name}')
    return manifest


class StateStore:
    """Versioned, durable store of learner states in one directory (see the module docstring).

    Thread-safe, and safe with several processes (writers are serialized by ``flock``).
    """

    def __init__(self, root: Path | str, *, keep: int = 5,
                 model_signature: dict[str, Any] | None = None,
                 signature_defaults: dict[str, Any] | None = None,
                 limits: StoreLimits | None = None) -> None:
        """Open (creating it with mode 0700 if needed) the state directory ``root``.

        Args:
            root: the state directory, e.g. :func:`default_state_dir`.
            keep: how many versions to keep (at least 1; the current one is never pruned).
            model_signature: JSON data describing the model the states belong to (backbone,
                input size, layers...); versions recorded with another one are never loaded.
                None accepts any version (tools).
            signature_defaults: values of signature fields that versions written before those
                fields existed are taken to have (:func:`signature_differences`).
            limits: sanity limits on what is read back.

        Raises:
            ValueError: ``keep`` < 1 or a signature that is not JSON data.
            StateStoreError: the directory cannot be created.

        """
        if keep < 1:
            raise ValueError(f'keep must be at least 1, got {keep}')
        self.root = Path(root).expanduser()
        self.keep = keep
        self.model_signature = _normalize_signature(model_signature)
        self.signature_defaults = _normalize_signature(signature_defaults) or {}
        self.limits = limits or StoreLimits()
        self._thread_lock = threading.RLock()
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._locking = 'flock'         # 'flock', 'lockf' or 'process' (see FilesystemReport)
        self._flock_reason = ''
        self._directory_sync = True
        self._atomic_replace = True
        self._weakened: dict[str, str] = {}  # what made the guarantee weaker, by topic
        if not self.root.is_dir():
            try:
                self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
                os.chmod(self.root, 0o700)
            except OSError as error:
                raise StateStoreError(
                    f'cannot create the state directory {self.root}: {_os_reason(error)}',
                    path=self.root, os_error=error) from error
        self._mount = mount_of(self.root)

    # ------------------------------------------------------------------ public API

    def commit(self, state: dict[str, Any], *, change: str,
               classes: list[str]) -> VersionInfo:
        """Write ``state`` as a new version and make it current; return once it is durable.

        Args:
            state: nested dict/list/tuple of tensors and JSON values (see state_codec).
            change: what changed, e.g. 'learned mug (30 frames)'.
            classes: the class names known at this version.

        Raises:
            TypeError: ``state``, ``change`` or ``classes`` of the wrong type.
            StateStoreError: the state cannot be encoded, or writing failed (disk full,
                read-only, permissions...): the message names the step, the path and the OS
                reason; no partial version is left and the previous version stays current.

        """
        if not isinstance(state, dict):
            raise TypeError(f'state must be a dict, got {type(state).__name__}')
        if not isinstance(change, str):
            raise TypeError('change must be a str')
        if (not isinstance(classes, (list, tuple))
                or not all(isinstance(name, str) for name in classes)):
            raise TypeError('classes must be a list of str')
        started = time.monotonic()
        try:
            tensor_bytes, tree_bytes = dump_state(state, limits=self.limits.codec)
        except StateCodecError as error:
            raise StateStoreError(f'cannot encode the state: {error}') from error
        if len(tensor_bytes) > self.limits.max_tensor_file_bytes:
            raise StateStoreError(f'the tensors take {len(tensor_bytes)} bytes, above the limit '
                                  f'of {self.limits.max_tensor_file_bytes}')
        if len(tree_bytes) > self.limits.max_tree_bytes:
            raise StateStoreError(f'state.json would be {len(tree_bytes)} bytes, above the limit '
                                  f'of {self.limits.max_tree_bytes}')
        with self._locked(required=True):
            for problem in self._clean_leftovers():
                _LOG.warning('state store %s: %s', self.root, problem)
            info = self._write_version(
                self._next_number(), {TENSOR_FILE: tensor_bytes, TREE_FILE: tree_bytes},
                change=change, classes=list(classes), signature=self.model_signature)
            self._prune()
        _LOG.info('committed %s (%s; %d classes; %d bytes) in %.3f s', info.name, change,
                  len(info.classes), info.size_bytes, time.monotonic() - started)
        return info

    def load_latest(self) -> LoadResult:
        """Load the current version, or the newest valid one before it when it is damaged.

        Leftovers of interrupted commits are removed first. Every problem found is logged as a
        warning and returned; ``state`` is None when no valid version exists.

        Raises:
            IncompatibleStateError: valid versions exist but all were written for another
                model (see the module docstring).
            StateStoreError: the state directory itself cannot be listed.

        """
        problems: list[str] = []
        with self._locked(required=False) as locked:
            if locked:
                problems += self._clean_leftovers()
            else:
                problems += [f'leftover of an interrupted commit or prune not removed (cannot '
                             f'lock {self.root / LOCK_FILE}): {entry.name}'
                             for entry in self._leftovers()]
            current, current_problem = self._read_current()
            if current_problem:
                problems.append(current_problem)
            numbers = self._version_numbers()
            candidates = sorted(numbers, reverse=True)
            if current is not None and current not in numbers:
                problems.append(f'CURRENT names {version_name(current)}, which does not exist; '
                                'falling back to the newest valid version')
            elif current is not None:
                for number in candidates:
                    if number > current:
                        problems.append(f'{version_name(number)}: ignored, it is newer than '
                                        f'CURRENT ({version_name(current)}): its commit never '
                                        'completed')
                candidates = [number for number in candidates if number <= current]
            refused: list[tuple[int, list[str]]] = []
            result = None
            for number in candidates:
                try:
                    manifest, payloads, state = self._read_version(number, decode=True)
                except _InvalidVersionError as invalid:
                    problems.append(f'{invalid}; skipped, trying the previous version')
                    continue
                differences = signature_differences(manifest['model_signature'],
                                                    self.model_signature,
                                                    self.signature_defaults)
                if differences:
                    refused.append((number, differences))
                    problems.append(f'{version_name(number)}: refused, written for another '
                                    f'model: {"; ".join(differences)}')
                    continue
                info = self._info(number, manifest, payloads, current=number == current)
                if current is not None and number != current:
                    problems.append(f'loaded {info.name} instead of {version_name(current)} '
                                    '(the version CURRENT names)')
                result = LoadResult(state, info, problems)
                break
        for problem in problems:
            _LOG.warning('state store %s: %s', self.root, problem)
        if result is not None:
            _LOG.info('loaded %s (%d classes, committed %s: %s)', result.info.name,
                      len(result.info.classes), result.info.created_utc, result.info.change)
            return result
        if refused:
            number, differences = refused[0]
            raise IncompatibleStateError(
                f'{self.root}: no version is compatible with this model; the newest, '
                f'{version_name(number)}, was written for another model: '
                f'{"; ".join(differences)}. Use the matching model parameters, roll back, or '
                'point the learner at another state directory.',
                version=number, differences=differences)
        return LoadResult(None, None, problems)

    def load_version(self, version: int) -> tuple[dict[str, Any], VersionInfo]:
        """Load one given version (read-only; no clean-up, no fallback).

        Raises:
            StateStoreError: the version does not exist or is invalid (message says why).
            IncompatibleStateError: it was written for another model.

        """
        if version not in self._version_numbers():
            raise StateStoreError(f'{version_name(version)} does not exist in {self.root}')
        try:
            manifest, payloads, state = self._read_version(version, decode=True)
        except _InvalidVersionError as invalid:
            raise StateStoreError(f'{version_name(version)} is invalid: {invalid}') from None
        self._raise_if_incompatible(version, manifest)
        current, _ = self._read_current()
        return state, self._info(version, manifest, payloads, current=version == current)

    def list_versions(self) -> list[VersionInfo]:
        """Return every version directory, oldest first, each checked in full."""
        current, _ = self._read_current()
        versions = []
        for number in self._version_numbers():
            try:
                manifest, payloads, _ = self._read_version(number, decode=True)
            except _InvalidVersionError as invalid:
                manifest = invalid.manifest or {}
                versions.append(VersionInfo(
                    version=number, path=self.root / version_name(number),
                    created_utc=str(manifest.get('created_utc', '')),
                    change=str(manifest.get('change', '')),
                    classes=tuple(manifest.get('classes', ())),
                    model_signature=manifest.get('model_signature'),
                    valid=False, problem=str(invalid), current=number == current))
                continue
            versions.append(self._info(number, manifest, payloads, current=number == current))
        return versions

    def rollback(self, version: int) -> VersionInfo:
        """Make ``version`` current again by committing a byte-exact copy of it as a new version.

        History stays linear (the new version's change is 'rollback to v000012') and nothing is
        lost. Returns the new version.

        Raises:
            StateStoreError: the version does not exist or is invalid, or writing failed.
            IncompatibleStateError: it was written for another model.

        """
        with self._locked(required=True):
            for problem in self._clean_leftovers():
                _LOG.warning('state store %s: %s', self.root, problem)
            if version not in self._version_numbers():
                names = [version_name(n) for n in self._version_numbers()]
                raise StateStoreError(f'cannot roll back to {version_name(version)}: it does not '
                                      f'exist in {self.root} (versions: {names})')
            try:
                manifest, payloads, _ = self._read_version(version, decode=True)
            except _InvalidVersionError as invalid:
                raise StateStoreError(f'cannot roll back to {version_name(version)}, it is '
                                      f'invalid: {invalid}') from None
            self._raise_if_incompatible(version, manifest)
            info = self._write_version(
                self._next_number(), payloads, change=f'rollback to {version_name(version)}',
                classes=manifest['classes'], signature=manifest['model_signature'])
            self._prune()
        _LOG.info('rolled back to %s as %s', version_name(version), info.name)
        return info

    def verify(self) -> VerifyReport:
        """Check every version and the store's bookkeeping; read-only, nothing is repaired."""
        problems = []
        for entry in self._leftovers():
            problems.append(f'leftover of an interrupted commit or prune: {entry.name} (removed '
                            'by the next load or commit)')
        current, current_problem = self._read_current()
        if current_problem:
            problems.append(current_problem)
        versions = self.list_versions()
        numbers = [info.version for info in versions]
        if current is not None and current not in numbers:
            problems.append(f'CURRENT names {version_name(current)}, which does not exist')
        for info in versions:
            if not info.valid:
                problems.append(info.problem or f'{info.name}: invalid')
            elif not info.compatible:
                problems.append(f'{info.name}: written for another model: {info.problem}')
            if current is not None and info.version > current:
                problems.append(f'{info.name}: newer than CURRENT ({version_name(current)}), '
                                'its commit never completed')
        return VerifyReport(versions=versions, current=current, problems=problems)

    def current_version(self) -> int | None:
        """Return the version CURRENT names (None if absent or unreadable)."""
        return self._read_current()[0]

    def probe(self) -> FilesystemReport:
        """Check that commits work in the state directory, before any lesson depends on it.

        Does, on a small probe under the directory (removed afterwards, or by the next load or
        commit after a crash), every operation a commit does: lock, create a directory, write
        and fsync files, fsync a directory, rename a file over another and a directory, fsync
        the state directory. Operations a filesystem refuses in a known way are handled by the
        policy of :mod:`cl_core_ros.core.filesystems` and reported in ``weaker``.

        Raises:
            StateStoreError: the directory cannot store lessons (read-only mount, no write
                permission, full disk or quota, no lock): the message names the filesystem,
                the mount, the step and the OS reason.

        """
        where = self._mount_description() or 'a filesystem of unknown type'
        probe_dir = self.root / f'{_TMP_PREFIX}probe-{os.getpid()}-{secrets.token_hex(4)}'
        step = 'lock the state directory'
        try:
            with self._locked(required=True):
                step = 'create a directory'
                os.mkdir(probe_dir, 0o700)
                step = 'write and fsync a file'
                _write_file(probe_dir / 'a', b'probe\n')
                _write_file(probe_dir / 'b', b'probe\n')
                step = 'fsync a directory'
                self._sync_dir(probe_dir)
                step = 'rename a file over an existing one'
                self._replace(probe_dir / 'b', probe_dir / 'a')
                step = 'rename a directory'
                renamed = probe_dir.with_name(f'{probe_dir.name}-renamed')
                os.rename(probe_dir, renamed)
                probe_dir = renamed
                step = 'fsync the state directory'
                self._sync_dir(self.root)
                step = 'remove the probe'
                shutil.rmtree(probe_dir)
        except (OSError, StateStoreError) as error:
            with contextlib.suppress(OSError):
                shutil.rmtree(probe_dir)
            os_error = error if isinstance(error, OSError) else error.__cause__
            if not isinstance(os_error, OSError):
                os_error = None
            code = error.errno
            reason = _os_reason(error) if isinstance(error, OSError) else str(error)
            hint = {
                errno.EROFS: 'the filesystem is mounted read-only',
                errno.EACCES: 'this user may not write there',
                errno.EPERM: 'this user may not write there',
                errno.ENOSPC: 'the filesystem is full',
                errno.EDQUOT: 'the disk quota is used up',
            }.get(code, 'see the reason')
            raise StateStoreError(
                f'the state directory {self.root} on {where} cannot store lessons: could not '
                f'{step}: {reason} ({hint}). Choose a writable state_dir (see "Where the state '
                'may live" in the README).', path=self.root, os_error=os_error) from error
        report = self.filesystem_report()
        log = _LOG.warning if report.weaker else _LOG.info
        log('%s', report.summary())
        return report

    def filesystem_report(self) -> FilesystemReport:
        """Return what is known of the filesystem's guarantees (complete after :meth:`probe`)."""
        mount = self._mount
        weaker = []
        if mount is not None and family_note(mount.family):
            weaker.append(f'{mount.fs_type}: {family_note(mount.family)}')
        weaker += self._weakened.values()
        return FilesystemReport(
            path=self.root, fs_type=mount.fs_type if mount else 'unknown',
            family=mount.family if mount else 'unknown', mount=self._mount_description(),
            locking=self._locking, directory_sync=self._directory_sync,
            atomic_replace=self._atomic_replace, weaker=tuple(weaker))

    def _mount_description(self) -> str:
        mount = self._mount
        return mount.describe() if mount is not None else ''

    # ------------------------------------------------------------------ internals

    @contextlib.contextmanager
    def _locked(self, *, required: bool) -> Iterator[bool]:
        """Hold the in-process lock and the directory's flock (re-entrant); yield if locked."""
        with self._thread_lock:
            if self._lock_depth == 0:
                self._lock_fd = self._acquire_flock(required=required)
            self._lock_depth += 1
            try:
                yield self._lock_fd is not None
            finally:
                self._lock_depth -= 1
                if self._lock_depth == 0 and self._lock_fd is not None:
                    if self._lock_fd >= 0:
                        os.close(self._lock_fd)
                    self._lock_fd = None

    def _acquire_flock(self, *, required: bool) -> int | None:
        """Lock the directory; return the lock's descriptor, or None where it is not locked.

        The lock file is opened read-write (NFS refuses ``flock(LOCK_EX)`` on a read-only
        descriptor with EBADF); read-only only where the directory cannot be written, which is
        enough for the readers that ask with ``required=False``. Where the filesystem has no
        locks (ENOLCK, EOPNOTSUPP...), POSIX ``lockf`` is tried, then writers are serialized in
        this process only (diagnosed as a weaker guarantee). The returned descriptor may be
        ``-1``: locked in this process only.
        """
        path = self.root / LOCK_FILE
        fd = None
        try:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as error:
                if error.errno not in _NOT_WRITABLE or not os.path.exists(path):
                    raise
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            if self._locking == 'flock':
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    return fd
                except OSError as error:
                    if error.errno not in _NO_LOCKS:
                        raise
                    self._locking = 'lockf'
                    self._flock_reason = _os_reason(error)
            if self._locking == 'lockf':
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX)
                    return fd
                except OSError as error:
                    if error.errno not in _NO_LOCKS and error.errno != errno.EBADF:
                        raise
                    self._locking = 'process'
                    self._weaken('locking', 'the filesystem has no file locks (flock: '
                                 f'{self._flock_reason}; lockf: {_os_reason(error)}): '
                                 'writers are serialized in this process only, so no other '
                                 'process may write this directory at the same time')
            os.close(fd)
            return -1
        except OSError as error:
            if fd is not None:
                os.close(fd)
            if required:
                raise StateStoreError(f'cannot lock the state directory ({path}): '
                                      f'{_os_reason(error)}', path=path, os_error=error) from error
            return None

    def _version_numbers(self) -> list[int]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StateStoreError(
                f'cannot list the state directory {self.root}: {_os_reason(error)}',
                path=self.root, os_error=error) from error
        return sorted(n for n in map(parse_version_name, names) if n is not None)

    def _leftovers(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.root) as entries:
                return sorted((entry for entry in entries if entry.name.startswith(
                    (_TMP_PREFIX, _TRASH_PREFIX, _CURRENT_TMP_PREFIX))), key=lambda e: e.name)
        except OSError:
            return []

    def _read_current(self) -> tuple[int | None, str | None]:
        """Return (version CURRENT names or None, a problem message or None)."""
        path = self.root / CURRENT_FILE
        try:
            data = _read_file(path, max_bytes=64)
        except FileNotFoundError:
            if self._version_numbers():
                return None, f'{CURRENT_FILE} is missing; using the newest valid version'
            return None, None
        except (OSError, ValueError) as error:
            return None, f'{CURRENT_FILE} cannot be read ({error}); using the newest valid version'
        text = data.decode('ascii', errors='replace').strip()
        number = parse_version_name(text)
        if number is None:
            return None, (f'{CURRENT_FILE} holds garbage ({data[:40]!r}), not a version name; '
                          'using the newest valid version')
        return number, None

    def _next_number(self) -> int:
        current, _ = self._read_current()
        return max([*self._version_numbers(), current or 0]) + 1

    def _remove_tree(self, path: Path, description: str) -> str:
        """Remove ``path`` (a version directory is first renamed, so never half-deleted)."""
        name = path.name
        try:
            if path.is_dir() and not path.is_symlink():
                if not path.name.startswith(_TRASH_PREFIX):
                    trash = self.root / f'{_TRASH_PREFIX}{path.name}-{secrets.token_hex(4)}'
                    try:
                        os.rename(path, trash)
                        path = trash
                    except OSError as error:
                        # overlayfs cannot rename a directory of a lower layer (EXDEV): remove
                        # it in place; a half-removed old version is invalid and skipped.
                        if error.errno != errno.EXDEV:
                            raise
                shutil.rmtree(path)
            else:
                os.unlink(path)
            self._sync_dir(self.root)
        except OSError as error:
            return f'could not remove {description} {path}: {_os_reason(error)}'
        return f'removed {description} {name}'

    def _clean_leftovers(self) -> list[str]:
        """Remove leftovers of interrupted commits and prunes; caller holds the lock."""
        problems = []
        for entry in self._leftovers():
            if entry.name.startswith(_TRASH_PREFIX):
                description = 'the leftover of an interrupted prune'
            else:
                description = 'the leftover of an interrupted commit'
            problems.append(self._remove_tree(Path(entry.path), description))
        current, _ = self._read_current()
        if current is not None and (self.root / version_name(current)).is_dir():
            for number in self._version_numbers():
                if number > current:
                    problems.append(self._remove_tree(
                        self.root / version_name(number),
                        f'version newer than CURRENT ({version_name(current)}), whose commit was '
                        'interrupted before it was acknowledged,'))
        return problems

    def _read_version(
        self, number: int, *, decode: bool
    ) -> tuple[dict[str, Any], dict[str, bytes], dict[str, Any] | None]:
        """Verify a version in full; return (manifest, file contents, state if decoded).

        Raises:
            _InvalidVersionError: with the version, the file and the reason.

        """
        path = self.root / version_name(number)
        try:
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
                raise _InvalidVersionError(number, '', 'not a directory (or a symbolic link)')
            entries = {name for name in os.listdir(path)
                       if not name.startswith(_NFS_SILLY_PREFIX)}
        except OSError as error:
            reason = f'cannot be read: {_os_reason(error)}'
            raise _InvalidVersionError(number, '', reason) from None
        manifest = None

        def read(name: str, max_bytes: int, expected_size: int | None = None) -> bytes:
            if name not in entries:
                raise _InvalidVersionError(number, name, 'the file is missing', manifest)
            try:
                return _read_file(path / name, max_bytes=max_bytes, expected_size=expected_size)
            except (OSError, ValueError) as error:
                raise _InvalidVersionError(number, name, str(error), manifest) from None

        raw = read(MANIFEST_FILE, self.limits.max_manifest_bytes)
        try:
            parsed = parse_json(raw, what='the manifest',
                                max_bytes=self.limits.max_manifest_bytes)
        except StateCodecError as error:
            raise _InvalidVersionError(number, MANIFEST_FILE, str(error)) from None
        manifest = _check_manifest(number, parsed)
        unexpected = sorted(entries - _VERSION_FILES)
        if unexpected:
            raise _InvalidVersionError(number, unexpected[0],
                                       'unexpected file in a version directory', manifest)
        payloads = {}
        for name in _DATA_FILES:
            spec = manifest['files'][name]
            limit = (self.limits.max_tensor_file_bytes if name == TENSOR_FILE
                     else self.limits.max_tree_bytes)
            data = read(name, limit, spec['size'])
            digest = hashlib.sha256(data).hexdigest()
            if digest != spec['sha256']:
                raise _InvalidVersionError(
                    number, name, f'sha256 {digest[:16]}... does not match the manifest '
                    f"({spec['sha256'][:16]}...): the file is corrupted or was replaced", manifest)
            payloads[name] = data
        state = None
        if decode:
            state = self._decode(number, manifest, payloads)
        return manifest, payloads, state

    def _decode(self, number: int, manifest: dict[str, Any],
                payloads: dict[str, bytes]) -> dict[str, Any]:
        codec = self.limits.codec
        try:
            document = parse_json(payloads[TREE_FILE], what='the state tree',
                                  max_bytes=self.limits.max_tree_bytes)
        except StateCodecError as error:
            raise _InvalidVersionError(number, TREE_FILE, str(error), manifest) from None
        try:
            tensors = load_tensors(payloads[TENSOR_FILE], limits=codec)
        except StateCodecError as error:
            raise _InvalidVersionError(number, TENSOR_FILE, str(error), manifest) from None
        try:
            state = decode_state(tensors, document, limits=codec)
        except StateCodecError as error:
            raise _InvalidVersionError(number, TREE_FILE, str(error), manifest) from None
        if not isinstance(state, dict):
            raise _InvalidVersionError(number, TREE_FILE, 'the state is not a dict', manifest)
        return state

    def _info(self, number: int, manifest: dict[str, Any], payloads: dict[str, bytes], *,
              current: bool) -> VersionInfo:
        differences = signature_differences(manifest['model_signature'], self.model_signature,
                                            self.signature_defaults)
        manifest_size = (self.root / version_name(number) / MANIFEST_FILE).stat().st_size
        return VersionInfo(
            version=number, path=self.root / version_name(number),
            created_utc=manifest['created_utc'], change=manifest['change'],
            classes=tuple(manifest['classes']), model_signature=manifest['model_signature'],
            size_bytes=sum(len(data) for data in payloads.values()) + manifest_size,
            valid=True, compatible=not differences,
            problem='; '.join(differences) or None, current=current)

    def _raise_if_incompatible(self, number: int, manifest: dict[str, Any]) -> None:
        differences = signature_differences(manifest['model_signature'], self.model_signature,
                                            self.signature_defaults)
        if differences:
            raise IncompatibleStateError(
                f'{version_name(number)} was written for another model: '
                f'{"; ".join(differences)}', version=number, differences=differences)

    def _write_version(self, number: int, payloads: dict[str, bytes], *, change: str,
                       classes: list[str], signature: dict[str, Any] | None) -> VersionInfo:
        """Write, publish and make current a new version; caller holds the lock."""
        name = version_name(number)
        final = self.root / name
        temporary = self.root / f'{_TMP_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}'
        manifest: dict[str, Any] = {
            'format': MANIFEST_FORMAT,
            'format_version': MANIFEST_FORMAT_VERSION,
            'version': number,
            'created_utc': datetime.datetime.now(datetime.UTC).isoformat(
                timespec='milliseconds').replace('+00:00', 'Z'),
            'change': change,
            'classes': list(classes),
            'model_signature': signature,
            'files': {file: {'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data)}
                      for file, data in payloads.items()},
        }
        manifest['manifest_sha256'] = _manifest_digest(manifest)
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True,
                                    ensure_ascii=True).encode('ascii') + b'\n'
        previous, _ = self._read_current()
        step, where, published = 'create the temporary version directory', temporary, False
        try:
            os.mkdir(temporary, 0o700)
            for file, data in (*payloads.items(), (MANIFEST_FILE, manifest_bytes)):
                step, where = f'write {file}', temporary / file
                _write_file(where, data)
            step, where = 'sync the version directory', temporary
            self._sync_dir(temporary)
            step, where = f'publish {name}', final
            if os.path.lexists(final):
                raise FileExistsError(errno.EEXIST, 'a version of that name already exists')
            os.rename(temporary, final)
            published = True
            step, where = 'sync the state directory', self.root
            self._sync_dir(self.root)
            step, where = f'update {CURRENT_FILE}', self.root / CURRENT_FILE
            self._write_current(number)
        except BaseException as error:
            self._undo_commit(temporary, final if published else None, number, previous)
            if not isinstance(error, OSError):
                raise
            still = version_name(previous) if previous is not None else 'no version'
            raise StateStoreError(
                f'commit of {name} failed: could not {step} ({where}): {_os_reason(error)}. '
                f'Nothing was written; {still} is still current.',
                path=where, os_error=error) from error
        return VersionInfo(
            version=number, path=final, created_utc=manifest['created_utc'], change=change,
            classes=tuple(classes), model_signature=signature,
            size_bytes=sum(map(len, payloads.values())) + len(manifest_bytes), valid=True,
            compatible=not signature_differences(signature, self.model_signature),
            current=True)

    def _write_current(self, number: int) -> None:
        temporary = self.root / f'{_CURRENT_TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}'
        try:
            _write_file(temporary, f'{version_name(number)}\n'.encode('ascii'))
            self._replace(temporary, self.root / CURRENT_FILE)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._sync_dir(self.root)

    def _replace(self, source: Path, target: Path) -> None:
        """Rename ``source`` over ``target``; unlink then rename where a server refuses that.

        Safe for CURRENT: the new version is durable before CURRENT changes, and a load that
        finds no CURRENT takes the newest valid version, which is that one.
        """
        try:
            os.replace(source, target)
            return
        except OSError as error:
            if error.errno not in _NO_REPLACE or not os.path.lexists(target):
                raise
            first = error
        try:
            os.unlink(target)
        except OSError:
            raise first from None
        os.rename(source, target)
        if self._atomic_replace:
            self._atomic_replace = False
            self._weaken('replace', f'rename over an existing file is refused '
                                    f'({_os_reason(first)}): {CURRENT_FILE} is replaced by '
                                    'unlink and rename (a crash in between loads the newest '
                                    'valid version)')

    def _sync_dir(self, path: Path) -> None:
        """Fsync a directory; where the filesystem refuses that (CIFS, 9p), note and go on."""
        try:
            _fsync_dir(path)
        except OSError as error:
            if error.errno not in _DIR_SYNC_UNSUPPORTED:
                raise
            if self._directory_sync:
                self._directory_sync = False
                self._weaken('directory_sync', f'fsync of a directory is not supported '
                             f'({_os_reason(error)}): a rename is durable once the server or '
                             'host has written it, not when the call returns')

    def _weaken(self, topic: str, message: str) -> None:
        if topic not in self._weakened:
            self._weakened[topic] = message
            _LOG.warning('state store %s: weaker guarantee: %s', self.root, message)

    def _undo_commit(self, temporary: Path, published: Path | None, number: int,
                     previous: int | None) -> None:
        """Best-effort removal of a failed commit; whatever stays is cleaned up later."""
        with contextlib.suppress(OSError):
            shutil.rmtree(temporary)
        if published is None:
            return
        now = self._read_current()[0]
        if now == number or (now is None and previous is not None):  # None: unlink+rename
            try:
                if previous is None:
                    os.unlink(self.root / CURRENT_FILE)
                else:
                    self._write_current(previous)
            except OSError as error:
                _LOG.warning('state store %s: could not restore %s: %s', self.root,
                             CURRENT_FILE, _os_reason(error))
        message = self._remove_tree(published, 'the failed version')
        _LOG.warning('state store %s: %s', self.root, message)

    def _prune(self) -> None:
        """Remove all but the newest ``keep`` versions, never the current; caller holds lock.

        Runs after the new version is durable, so a failure here is only logged.
        """
        try:
            current, _ = self._read_current()
            numbers = self._version_numbers()
        except StateStoreError as error:
            _LOG.warning('state store %s: not pruned: %s', self.root, error)
            return
        for number in numbers[:max(0, len(numbers) - self.keep)]:
            if number == current:
                continue
            message = self._remove_tree(self.root / version_name(number), 'old version')
            log = _LOG.debug if message.startswith('removed') else _LOG.warning
            log('state store %s: %s', self.root, message)
