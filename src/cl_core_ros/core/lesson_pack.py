"""Lesson packs: what a learner knows about some classes, as data another learner can import.

A pack holds, per class, exactly what :class:`~cl_core_ros.core.learner.Learner` keeps for it:

- ``pool``: its pool-level replay patterns as stored (N x D float32) and ``seen``, the number
  of patterns the class's reservoir sample stands for;
- ``deep``: its deep-level replay patterns as stored (M x C x H x W, quantised like the replay
  memory: ``data``/``lo``/``scale``) with ``deep_seen``, and ``pending``: the deep latents of its
  lessons not yet consolidated;
- its read-out statistics: the prototype sum (D float64) and count, the lesson spreads (sum and
  count of the per-lesson 5th-percentile similarities that calibrate the unknown verdict);
- its CWR* row (D float32) and count ``past``;
- where it comes from: ``origin`` (the learner that was taught it, e.g. ``/robot_a/learner``),
  the class name there, and ``revision`` (time in ns of that learner's last change to it, so a
  newer pack of the same class from the same origin supersedes an older one).

The pack also records the backbone signature the patterns are valid for (the fields a stored
state must match: backbone, input size, deep layer, shapes, pooling, a sha256 of the frozen
lower weights), the fingerprint of the ``upper`` part that computed the pool vectors, and the
storage type of the deep latents.

On disk a pack is a directory with two files (nothing else)::

    lessons.safetensors   every tensor (see :mod:`cl_core_ros.core.state_codec`)
    manifest.json         format, origin, time, signature, per-class summary, the structure
                          tree referring to the tensors, sha256 and size of the tensor file,
                          and ``pack_sha256``: the pack's content address

``pack_sha256`` is the sha256 of the canonical JSON of the manifest without itself, and the
manifest holds the tensor file's sha256: a change to any byte of either file is detected. It is
an integrity check and a name for deduplication, not a signature: anyone can write a valid pack,
so import only from robots you trust. No pickle is involved; both files are parsed as data only.
"""

import contextlib
from dataclasses import dataclass
import datetime
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from cl_core_ros.core.latents import QuantisedTensor, REPLAY_DTYPES
from cl_core_ros.core.state_codec import (
    CodecLimits,
    decode_state,
    dump_state,
    load_tensors,
    parse_json,
    StateCodecError,
)

PACK_FORMAT = 'cl_core_ros.lesson_pack'
PACK_FORMAT_VERSION = 1
TENSOR_FILE = 'lessons.safetensors'
MANIFEST_FILE = 'manifest.json'
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
MAX_TENSOR_BYTES = 4 * 1024 ** 3
_MANIFEST_KEYS = frozenset((
    'format', 'format_version', 'origin', 'created_utc', 'signature', 'upper_fingerprint',
    'replay_dtype', 'classes', 'tree', 'tensors', 'pack_sha256'))
_SUMMARY_KEYS = ('name', 'origin', 'revision', 'pool_patterns', 'deep_patterns',
                 'pending_patterns', 'cwr_count')
_SCALARS = ('seen', 'deep_seen', 'prototype_count', 'spread_count', 'cwr_count', 'revision')


class PackError(ValueError):
    """A pack is damaged, tampered with, malformed, or cannot be imported; says why."""


@dataclass(frozen=True)
class ClassLesson:
    """Everything a learner keeps about one class (see the module docstring for each field)."""

    name: str
    origin: str
    revision: int
    pool: torch.Tensor
    seen: int
    deep: QuantisedTensor
    deep_seen: int
    pending: QuantisedTensor
    prototype_sum: torch.Tensor
    prototype_count: int
    spread_sum: float
    spread_count: int
    cwr_row: torch.Tensor
    cwr_count: int

    def deep_latents(self) -> QuantisedTensor | None:
        """Return the replay and pending deep latents together (None when there are none)."""
        parts = [q for q in (self.deep, self.pending) if len(q)]
        return QuantisedTensor.cat(parts) if parts else None

    def summary(self) -> dict[str, Any]:
        """Return the plain-value summary written into the manifest."""
        return {'name': self.name, 'origin': self.origin, 'revision': self.revision,
                'pool_patterns': int(self.pool.shape[0]), 'deep_patterns': len(self.deep),
                'pending_patterns': len(self.pending), 'cwr_count': self.cwr_count}


@dataclass(frozen=True)
class LessonPack:
    """Classes exported from one learner, with the model facts that make them valid.

    Attributes:
        origin: fully qualified name of the exporting learner (e.g. ``/robot_a/learner``).
        created_utc: ISO 8601 UTC time of the export.
        signature: the exporter's backbone signature (``Learner.signature()``).
        upper_fingerprint: sha256 of the ``upper`` weights that computed the pool vectors.
        replay_dtype: storage type of the deep latents ('uint8', 'float16', 'float32').
        classes: one :class:`ClassLesson` per class.
    """

    origin: str
    created_utc: str
    signature: dict
    upper_fingerprint: str
    replay_dtype: str
    classes: tuple[ClassLesson, ...]

    @property
    def labels(self) -> list[str]:
        """Return the class names in the pack."""
        return [c.name for c in self.classes]

    def encode(self) -> tuple[bytes, bytes, str]:
        """Return ``(manifest bytes, safetensors bytes, pack_sha256)``.

        Raises:
            PackError: a tensor or value cannot be stored.
        """
        tree = {'classes': [_class_tree(c) for c in self.classes]}
        try:
            tensor_bytes, tree_bytes = dump_state(tree)
        except StateCodecError as error:
            raise PackError(f'cannot encode the pack: {error}') from error
        manifest = {
            'format': PACK_FORMAT, 'format_version': PACK_FORMAT_VERSION,
            'origin': self.origin, 'created_utc': self.created_utc,
            'signature': self.signature, 'upper_fingerprint': self.upper_fingerprint,
            'replay_dtype': self.replay_dtype,
            'classes': [c.summary() for c in self.classes],
            'tree': json.loads(tree_bytes),
            'tensors': {'sha256': hashlib.sha256(tensor_bytes).hexdigest(),
                        'size': len(tensor_bytes)},
        }
        manifest['pack_sha256'] = _digest(manifest)
        manifest_bytes = json.dumps(manifest, sort_keys=True, ensure_ascii=True,
                                    allow_nan=False).encode('ascii')
        return manifest_bytes, tensor_bytes, manifest['pack_sha256']


def now_utc() -> str:
    """Return the current UTC time as ISO 8601 with milliseconds and a Z."""
    return datetime.datetime.now(datetime.UTC).isoformat(
        timespec='milliseconds').replace('+00:00', 'Z')


def _digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != 'pack_sha256'}
    canonical = json.dumps(body, sort_keys=True, separators=(',', ':'), ensure_ascii=True,
                           allow_nan=False)
    return hashlib.sha256(canonical.encode('ascii')).hexdigest()


def _class_tree(c: ClassLesson) -> dict:
    return {'name': c.name, 'origin': c.origin, 'revision': int(c.revision),
            'pool': c.pool.float().contiguous(), 'seen': int(c.seen),
            'deep': c.deep.state_dict(), 'deep_seen': int(c.deep_seen),
            'pending': c.pending.state_dict(),
            'prototype_sum': c.prototype_sum.double().contiguous(),
            'prototype_count': int(c.prototype_count),
            'spread_sum': float(c.spread_sum), 'spread_count': int(c.spread_count),
            'cwr_row': c.cwr_row.float().contiguous(), 'cwr_count': int(c.cwr_count)}


# ---------------------------------------------------------------------------- decoding
def decode(manifest_bytes: bytes, tensor_bytes: bytes) -> tuple[LessonPack, str]:
    """Verify and decode a pack; return ``(pack, pack_sha256)``.

    Raises:
        PackError: the manifest or the tensor file is damaged or was changed (checksums do not
            match), or their contents are not a well-formed pack (the message says what).
    """
    try:
        manifest = parse_json(manifest_bytes, what='the pack manifest',
                              max_bytes=MAX_MANIFEST_BYTES)
    except StateCodecError as error:
        raise PackError(f'damaged pack: {error}') from error
    if not isinstance(manifest, dict) or manifest.get('format') != PACK_FORMAT:
        raise PackError('not a cl_core_ros lesson pack (missing or wrong "format")')
    if manifest.get('format_version') != PACK_FORMAT_VERSION:
        raise PackError(f'lesson pack format version {manifest.get("format_version")!r} is not '
                        f'supported (this code reads {PACK_FORMAT_VERSION})')
    if set(manifest) != _MANIFEST_KEYS:
        raise PackError(f'malformed pack manifest: unexpected or missing keys '
                        f'{sorted(set(manifest) ^ _MANIFEST_KEYS)}')
    if manifest['pack_sha256'] != _digest(manifest):
        raise PackError('damaged or tampered pack: the manifest does not match its sha256 '
                        'content address')
    spec = manifest['tensors']
    if not isinstance(spec, dict) or set(spec) != {'sha256', 'size'}:
        raise PackError('malformed pack manifest: bad "tensors" entry')
    if len(tensor_bytes) != spec['size']:
        raise PackError(f'damaged or tampered pack: the tensor file has {len(tensor_bytes)} '
                        f'bytes, the manifest says {spec["size"]}')
    digest = hashlib.sha256(tensor_bytes).hexdigest()
    if digest != spec['sha256']:
        raise PackError(f'damaged or tampered pack: tensor file sha256 {digest[:16]}... does not '
                        f'match the manifest ({str(spec["sha256"])[:16]}...)')
    try:
        tree = decode_state(load_tensors(tensor_bytes, limits=CodecLimits()), manifest['tree'])
    except StateCodecError as error:
        raise PackError(f'malformed pack: {error}') from error
    for key, kind in (('origin', str), ('created_utc', str), ('signature', dict),
                      ('upper_fingerprint', str), ('replay_dtype', str), ('classes', list)):
        if not isinstance(manifest[key], kind):
            raise PackError(f'malformed pack manifest: "{key}" must be {kind.__name__}')
    if manifest['replay_dtype'] not in REPLAY_DTYPES:
        raise PackError(f'malformed pack: replay_dtype {manifest["replay_dtype"]!r}')
    signature = manifest['signature']
    classes = _classes(tree, signature, manifest['replay_dtype'])
    if [c.summary() for c in classes] != manifest['classes']:
        raise PackError('malformed pack: the class summary does not match the tensors')
    pack = LessonPack(origin=manifest['origin'], created_utc=manifest['created_utc'],
                      signature=signature, upper_fingerprint=manifest['upper_fingerprint'],
                      replay_dtype=manifest['replay_dtype'], classes=tuple(classes))
    return pack, manifest['pack_sha256']


def _classes(tree: Any, signature: dict, replay_dtype: str) -> list[ClassLesson]:
    if not isinstance(tree, dict) or set(tree) != {'classes'} or not isinstance(
            tree['classes'], list) or not tree['classes']:
        raise PackError('malformed pack: it holds no classes')
    dim = signature.get('feature_dim')
    deep_shape = signature.get('deep_shape')
    if not isinstance(dim, int) or not isinstance(deep_shape, list):
        raise PackError('malformed pack: the signature lacks feature_dim or deep_shape')
    out, names = [], set()
    for i, item in enumerate(tree['classes']):
        where = f'class {i}'
        if not isinstance(item, dict) or set(item) != set(_class_tree_keys()):
            raise PackError(f'malformed pack: {where} has the wrong fields')
        name = item['name']
        if not isinstance(name, str) or not name or not isinstance(item['origin'], str):
            raise PackError(f'malformed pack: {where} has no name or origin')
        if name in names:
            raise PackError(f'malformed pack: class {name!r} appears twice')
        names.add(name)
        for key in _SCALARS:
            if not isinstance(item[key], int) or isinstance(item[key], bool) or item[key] < 0:
                raise PackError(f'malformed pack: {name!r}.{key} must be a count')
        if not isinstance(item['spread_sum'], float) or not math.isfinite(item['spread_sum']):
            raise PackError(f'malformed pack: {name!r}.spread_sum must be a finite number')
        pool = _tensor(item['pool'], torch.float32, (None, dim), f'{name!r}.pool')
        proto = _tensor(item['prototype_sum'], torch.float64, (dim,), f'{name!r}.prototype_sum')
        row = _tensor(item['cwr_row'], torch.float32, (dim,), f'{name!r}.cwr_row')
        deep = _quantised(item['deep'], replay_dtype, deep_shape, f'{name!r}.deep')
        pending = _quantised(item['pending'], replay_dtype, deep_shape, f'{name!r}.pending')
        if item['seen'] < pool.shape[0] or item['deep_seen'] > 0 and item['deep_seen'] < len(deep):
            raise PackError(f'malformed pack: {name!r} counts fewer patterns seen than stored')
        if pool.shape[0] == 0 and len(deep) + len(pending) == 0:
            raise PackError(f'malformed pack: {name!r} has no replay patterns')
        out.append(ClassLesson(
            name=name, origin=item['origin'], revision=item['revision'], pool=pool,
            seen=item['seen'], deep=deep, deep_seen=item['deep_seen'], pending=pending,
            prototype_sum=proto, prototype_count=item['prototype_count'],
            spread_sum=item['spread_sum'], spread_count=item['spread_count'], cwr_row=row,
            cwr_count=item['cwr_count']))
    return out


def _class_tree_keys() -> tuple[str, ...]:
    return ('name', 'origin', 'revision', 'pool', 'seen', 'deep', 'deep_seen', 'pending',
            'prototype_sum', 'prototype_count', 'spread_sum', 'spread_count', 'cwr_row',
            'cwr_count')


def _tensor(value: Any, dtype: torch.dtype, shape: tuple, where: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dtype != dtype or value.dim() != len(shape) \
            or any(s is not None and value.shape[k] != s for k, s in enumerate(shape)):
        raise PackError(f'malformed pack: {where} must be a {str(dtype)[6:]} tensor of shape '
                        f'{["N" if s is None else s for s in shape]}')
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise PackError(f'malformed pack: {where} holds NaN or infinite values')
    return value


def _quantised(value: Any, dtype: str, deep_shape: list, where: str) -> QuantisedTensor:
    if not isinstance(value, dict) or set(value) != {'data', 'lo', 'scale'}:
        raise PackError(f'malformed pack: {where} must hold data, lo and scale')
    data = value['data']
    if not isinstance(data, torch.Tensor) or str(data.dtype).removeprefix('torch.') != dtype \
            or list(data.shape[1:]) != list(deep_shape):
        raise PackError(f'malformed pack: {where} must be {dtype} latents of shape '
                        f'N x {deep_shape}')
    n = int(data.shape[0])
    lo = _tensor(value['lo'], torch.float32, (n,), f'{where}.lo')
    scale = _tensor(value['scale'], torch.float32, (n,), f'{where}.scale')
    if data.is_floating_point() and not bool(torch.isfinite(data).all()):
        raise PackError(f'malformed pack: {where} holds NaN or infinite values')
    return QuantisedTensor(data, lo, scale)


# ---------------------------------------------------------------------------- files
def write_pack(pack: LessonPack, path: Path | str) -> tuple[Path, str, int]:
    """Write ``pack`` as a new directory ``path``; return (path, pack_sha256, bytes written).

    The files are written into a temporary sibling directory, fsynced, and the directory is
    renamed into place, so ``path`` is either complete or absent.

    Raises:
        PackError: ``path`` exists, or the pack cannot be encoded.
        OSError: writing failed (the message names the path).
    """
    path = Path(path).expanduser()
    if os.path.lexists(path):
        raise PackError(f'{path} already exists; choose a new path for the pack')
    manifest_bytes, tensor_bytes, pack_id = pack.encode()
    temporary = path.with_name(f'.{path.name}.tmp-{os.getpid()}')
    os.mkdir(temporary, 0o755)
    try:
        for name, data in ((TENSOR_FILE, tensor_bytes), (MANIFEST_FILE, manifest_bytes)):
            fd = os.open(temporary / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        os.rename(temporary, path)
    except BaseException:
        for name in (TENSOR_FILE, MANIFEST_FILE):
            with contextlib.suppress(OSError):
                os.unlink(temporary / name)
        with contextlib.suppress(OSError):
            os.rmdir(temporary)
        raise
    return path, pack_id, len(manifest_bytes) + len(tensor_bytes)


def read_pack(path: Path | str) -> tuple[LessonPack, str]:
    """Read and verify the pack directory ``path``; return ``(pack, pack_sha256)``.

    Raises:
        PackError: missing files, damaged or tampered contents, a malformed pack.
    """
    path = Path(path).expanduser()
    if not path.is_dir():
        raise PackError(f'{path}: no lesson pack there (a pack is a directory holding '
                        f'{MANIFEST_FILE} and {TENSOR_FILE})')
    extra = sorted(set(os.listdir(path)) - {MANIFEST_FILE, TENSOR_FILE})
    if extra:
        raise PackError(f'{path}: unexpected file {extra[0]!r} in a lesson pack')
    parts = []
    for name, limit in ((MANIFEST_FILE, MAX_MANIFEST_BYTES), (TENSOR_FILE, MAX_TENSOR_BYTES)):
        file = path / name
        try:
            if file.is_symlink() or not file.is_file():
                raise PackError(f'{file}: missing or not a regular file')
            if file.stat().st_size > limit:
                raise PackError(f'{file}: larger than {limit} bytes')
            parts.append(file.read_bytes())
        except OSError as error:
            raise PackError(f'{file}: cannot be read: {error.strerror or error}') from error
    return decode(parts[0], parts[1])
