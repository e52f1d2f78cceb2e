"""Exact, pickle-free encoding of a learner state into safetensors bytes and a JSON tree.

A learner state is a nested structure of ``dict``/``list``/``tuple`` containers whose leaves are
``torch.Tensor`` objects or plain JSON values (``str``, ``int``, ``float``, ``bool``, ``None``).
:func:`encode_state` splits it into

* a flat ``dict[str, torch.Tensor]`` for safetensors, whose keys are generated (``t0``, ``t1``,
  ...), so the caller's keys (with dots, slashes, anything) never need escaping; and
* a JSON document that mirrors the structure and refers to the tensors by those keys.

:func:`decode_state` rebuilds the identical structure. The tree format (version 1):

* ``str``, ``int``, ``bool``, ``None``, finite ``float``: the JSON value itself.
* non-finite ``float``: ``{"$float": "nan" | "inf" | "-inf"}`` (strict JSON has no NaN).
* ``list``: a JSON array of nodes.
* ``tuple``: ``{"$tuple": [nodes]}``.
* ``dict``: ``{"$dict": [[key, node], ...]}``; keys are ``str`` or ``int`` and keep their type
  and order.
* tensor: ``{"$tensor": "t3", "dtype": "float32", "shape": [2, 3]}``; dtype and shape are checked
  against the safetensors header on decoding.

A JSON object in the tree is therefore always one of these tagged nodes, and a user's value can
never be mistaken for one. Tensors come back as plain CPU tensors (a ``Parameter`` comes back as a
``Tensor``, ``requires_grad`` is not kept). No pickle is involved anywhere: safetensors and JSON
are data-only formats.
"""

from collections.abc import Mapping
from dataclasses import dataclass
import json
import math
import struct
from typing import Any

import safetensors.torch
import torch

TREE_FORMAT = 'cl_core_ros.state_tree'
TREE_FORMAT_VERSION = 1

_TENSOR = '$tensor'
_DICT = '$dict'
_TUPLE = '$tuple'
_FLOAT = '$float'
_NON_FINITE = {'nan': math.nan, 'inf': math.inf, '-inf': -math.inf}
_STORABLE_DTYPES = frozenset(
    dtype for dtype in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex64,
        torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
        getattr(torch, 'uint64', None), getattr(torch, 'uint32', None),
        getattr(torch, 'uint16', None), getattr(torch, 'float8_e4m3fn', None),
        getattr(torch, 'float8_e5m2', None),
    ) if dtype is not None)


class StateCodecError(ValueError):
    """A state cannot be encoded, or stored bytes do not decode to a valid state."""


@dataclass(frozen=True)
class CodecLimits:
    """Sanity limits applied when encoding and, above all, when decoding untrusted bytes.

    Attributes:
        max_tensors: most tensors in one state.
        max_depth: deepest container nesting.
        max_nodes: most nodes (containers and leaves) in the tree.
        max_header_bytes: largest safetensors JSON header.

    """

    max_tensors: int = 100_000
    max_depth: int = 64
    max_nodes: int = 5_000_000
    max_header_bytes: int = 64 * 1024 * 1024


DEFAULT_LIMITS = CodecLimits()


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix('torch.')


class _Encoder:
    def __init__(self, limits: CodecLimits) -> None:
        self.limits = limits
        self.tensors: dict[str, torch.Tensor] = {}
        self.nodes = 0
        self._storages: set[int] = set()
        self._path_ids: set[int] = set()

    def encode(self, value: Any, path: str, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise StateCodecError(f'state has more than {self.limits.max_nodes} nodes')
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return {_FLOAT: 'nan' if math.isnan(value) else ('inf' if value > 0 else '-inf')}
        if isinstance(value, torch.Tensor):
            return self._tensor(value, path)
        if isinstance(value, (dict, list, tuple)):
            if depth >= self.limits.max_depth:
                raise StateCodecError(
                    f'{path}: nesting deeper than {self.limits.max_depth} levels')
            if id(value) in self._path_ids:
                raise StateCodecError(f'{path}: the state contains a reference cycle')
            self._path_ids.add(id(value))
            try:
                return self._container(value, path, depth)
            finally:
                self._path_ids.discard(id(value))
        raise StateCodecError(
            f'{path}: unsupported type {type(value).__module__}.{type(value).__qualname__} '
            '(allowed: dict, list, tuple, torch.Tensor, str, int, float, bool, None)')

    def _container(self, value: dict | list | tuple, path: str, depth: int) -> Any:
        if isinstance(value, dict):
            pairs = []
            for key, item in value.items():
                if isinstance(key, bool) or not isinstance(key, (str, int)):
                    raise StateCodecError(
                        f'{path}: dict key {key!r} has type {type(key).__name__}; '
                        'only str and int keys are supported')
                pairs.append([key, self.encode(item, f'{path}[{key!r}]', depth + 1)])
            return {_DICT: pairs}
        items = [self.encode(item, f'{path}[{i}]', depth + 1) for i, item in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items

    def _tensor(self, value: torch.Tensor, path: str) -> dict[str, Any]:
        if len(self.tensors) >= self.limits.max_tensors:
            raise StateCodecError(f'state has more than {self.limits.max_tensors} tensors')
        if value.layout != torch.strided:
            raise StateCodecError(f'{path}: {value.layout} tensors are not supported; '
                                  'convert with .to_dense()')
        if value.is_quantized or value.is_meta:
            raise StateCodecError(f'{path}: quantized and meta tensors are not supported')
        if value.dtype not in _STORABLE_DTYPES:
            raise StateCodecError(f'{path}: dtype {value.dtype} cannot be stored in safetensors')
        tensor = value.detach().cpu().resolve_conj().resolve_neg().contiguous()
        if tensor.numel():
            storage = tensor.untyped_storage().data_ptr()
            if storage in self._storages:
                # Views of one storage cannot be saved side by side: store a private copy.
                tensor = tensor.clone()
                storage = tensor.untyped_storage().data_ptr()
            self._storages.add(storage)
        key = f't{len(self.tensors)}'
        self.tensors[key] = tensor
        return {_TENSOR: key, 'dtype': _dtype_name(tensor.dtype), 'shape': list(tensor.shape)}


def encode_state(
    state: Any, *, limits: CodecLimits = DEFAULT_LIMITS
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a state into safetensors-ready tensors and a JSON-able document.

    Raises:
        StateCodecError: an unsupported type, key, dtype or layout, a cycle, or a limit exceeded;
            the message names the path of the offending value.

    """
    encoder = _Encoder(limits)
    root = encoder.encode(state, 'state', 0)
    document = {
        'format': TREE_FORMAT,
        'format_version': TREE_FORMAT_VERSION,
        'tensor_count': len(encoder.tensors),
        'root': root,
    }
    return encoder.tensors, document


class _Decoder:
    def __init__(self, tensors: Mapping[str, torch.Tensor], limits: CodecLimits) -> None:
        self.tensors = tensors
        self.limits = limits
        self.used: set[str] = set()
        self.nodes = 0

    def decode(self, node: Any, path: str, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise StateCodecError(f'tree has more than {self.limits.max_nodes} nodes')
        if node is None or isinstance(node, (bool, str, int, float)):
            return node
        if depth >= self.limits.max_depth:
            raise StateCodecError(f'{path}: nesting deeper than {self.limits.max_depth} levels')
        if isinstance(node, list):
            return [self.decode(item, f'{path}[{i}]', depth + 1) for i, item in enumerate(node)]
        if not isinstance(node, dict) or len(node) == 0:
            raise StateCodecError(f'{path}: unexpected node {type(node).__name__}')
        if _TENSOR in node:
            return self._tensor(node, path)
        if len(node) != 1:
            raise StateCodecError(f'{path}: unknown node with keys {sorted(node)}')
        ((tag, body),) = node.items()
        if tag == _DICT:
            return self._dict(body, path, depth)
        if tag == _TUPLE and isinstance(body, list):
            return tuple(self.decode(item, f'{path}[{i}]', depth + 1)
                         for i, item in enumerate(body))
        if tag == _FLOAT and isinstance(body, str) and body in _NON_FINITE:
            return _NON_FINITE[body]
        raise StateCodecError(f'{path}: unknown or malformed node {tag!r}')

    def _dict(self, body: Any, path: str, depth: int) -> dict:
        if not isinstance(body, list):
            raise StateCodecError(f'{path}: $dict body must be a list of [key, value] pairs')
        result: dict = {}
        for pair in body:
            if (not isinstance(pair, list) or len(pair) != 2
                    or isinstance(pair[0], bool) or not isinstance(pair[0], (str, int))):
                raise StateCodecError(f'{path}: malformed $dict entry {str(pair)[:80]}')
            key = pair[0]
            if key in result:
                raise StateCodecError(f'{path}: duplicate dict key {key!r}')
            result[key] = self.decode(pair[1], f'{path}[{key!r}]', depth + 1)
        return result

    def _tensor(self, node: dict, path: str) -> torch.Tensor:
        key, dtype, shape = node.get(_TENSOR), node.get('dtype'), node.get('shape')
        if (set(node) != {_TENSOR, 'dtype', 'shape'} or not isinstance(key, str)
                or not isinstance(dtype, str) or not isinstance(shape, list)):
            raise StateCodecError(f'{path}: malformed tensor node')
        if key not in self.tensors:
            raise StateCodecError(f'{path}: tensor {key!r} is missing from the tensor file')
        if key in self.used:
            raise StateCodecError(f'{path}: tensor {key!r} is referenced twice')
        self.used.add(key)
        tensor = self.tensors[key]
        if _dtype_name(tensor.dtype) != dtype or list(tensor.shape) != shape:
            raise StateCodecError(
                f'{path}: tensor {key!r} is {_dtype_name(tensor.dtype)} {list(tensor.shape)} in '
                f'the tensor file but {dtype} {shape} in the tree')
        return tensor


def decode_state(
    tensors: Mapping[str, torch.Tensor],
    document: Any,
    *,
    limits: CodecLimits = DEFAULT_LIMITS,
) -> Any:
    """Rebuild the state from the tensors and the document made by :func:`encode_state`.

    Every tensor must be referenced exactly once, with the dtype and shape the tree records.

    Raises:
        StateCodecError: the document is malformed, of an unknown format, or inconsistent with
            the tensors.

    """
    if not isinstance(document, dict) or document.get('format') != TREE_FORMAT:
        raise StateCodecError('not a cl_core_ros state tree (missing or wrong "format")')
    version = document.get('format_version')
    if version != TREE_FORMAT_VERSION:
        raise StateCodecError(
            f'state tree format version {version!r} is not supported '
            f'(this code reads version {TREE_FORMAT_VERSION})')
    if set(document) != {'format', 'format_version', 'tensor_count', 'root'}:
        raise StateCodecError(f'unexpected keys in state tree: {sorted(document)}')
    if document['tensor_count'] != len(tensors):
        raise StateCodecError(
            f'the tree declares {document["tensor_count"]!r} tensors, '
            f'the tensor file holds {len(tensors)}')
    decoder = _Decoder(tensors, limits)
    state = decoder.decode(document['root'], 'state', 0)
    unused = set(tensors) - decoder.used
    if unused:
        raise StateCodecError(f'{len(unused)} tensor(s) in the tensor file are not referenced '
                              f'by the tree, e.g. {sorted(unused)[:3]}')
    return state


def dump_state(
    state: Any, *, limits: CodecLimits = DEFAULT_LIMITS
) -> tuple[bytes, bytes]:
    """Encode a state into (safetensors bytes, UTF-8 JSON bytes).

    Raises:
        StateCodecError: see :func:`encode_state`; also when safetensors refuses a tensor.

    """
    tensors, document = encode_state(state, limits=limits)
    try:
        tensor_bytes = safetensors.torch.save(tensors)
    except (ValueError, RuntimeError, TypeError, KeyError) as error:
        raise StateCodecError(f'safetensors cannot serialize the state: {error}') from error
    try:
        json_bytes = json.dumps(document, ensure_ascii=True, allow_nan=False,
                                separators=(',', ':')).encode('ascii')
    except ValueError as error:  # e.g. an int with more digits than Python converts
        raise StateCodecError(f'the state tree cannot be written as JSON: {error}') from error
    return tensor_bytes, json_bytes


def parse_json(data: bytes, *, what: str, max_bytes: int) -> Any:
    """Parse untrusted strict JSON (UTF-8, no NaN/Infinity) with a size limit.

    Raises:
        StateCodecError: too large, not UTF-8, not JSON, or nested too deeply to parse.

    """
    if len(data) > max_bytes:
        raise StateCodecError(f'{what} is {len(data)} bytes, above the {max_bytes}-byte limit')

    def reject_constant(name: str) -> None:
        raise ValueError(f'non-standard JSON constant {name}')

    try:
        return json.loads(data.decode('utf-8'), parse_constant=reject_constant)
    except UnicodeDecodeError as error:
        raise StateCodecError(f'{what} is not UTF-8 text: {error}') from error
    except RecursionError as error:
        raise StateCodecError(f'{what} is nested too deeply to parse') from error
    except ValueError as error:  # JSONDecodeError, int digit limit, constants
        raise StateCodecError(f'{what} is not valid JSON: {error}') from error


def check_safetensors_header(data: bytes, *, limits: CodecLimits = DEFAULT_LIMITS) -> int:
    """Check that bytes look like a sane safetensors file before parsing them; return its size.

    The safetensors parser validates everything itself; this pre-check gives a clear message
    for the common cases (a pickle or any other file put in place of the tensor file) and
    refuses absurd tensor counts before anything is allocated.

    Raises:
        StateCodecError: not a safetensors file, or beyond the limits.

    """
    if len(data) < 8:
        raise StateCodecError(f'not a safetensors file: {len(data)} bytes, too short for a header')
    (header_len,) = struct.unpack('<Q', data[:8])
    if header_len > len(data) - 8 or header_len > limits.max_header_bytes:
        raise StateCodecError(
            f'not a safetensors file: header length {header_len} does not fit the '
            f'{len(data)}-byte file (starts with {data[:8]!r})')
    header = parse_json(data[8:8 + header_len], what='safetensors header',
                        max_bytes=limits.max_header_bytes)
    if not isinstance(header, dict):
        raise StateCodecError('not a safetensors file: header is not a JSON object')
    count = len(header) - ('__metadata__' in header)
    if count > limits.max_tensors:
        raise StateCodecError(
            f'safetensors file holds {count} tensors, above the limit of {limits.max_tensors}')
    return len(data)


def load_tensors(tensor_bytes: bytes, *, limits: CodecLimits = DEFAULT_LIMITS) -> dict:
    """Parse safetensors bytes into CPU tensors (data only; nothing is executed).

    Raises:
        StateCodecError: not a safetensors file, malformed, or beyond the limits.

    """
    check_safetensors_header(tensor_bytes, limits=limits)
    try:
        return safetensors.torch.load(tensor_bytes)
    except Exception as error:  # safetensors raises SafetensorError and others on bad input
        raise StateCodecError(f'safetensors rejected the tensor file: {error}') from error


def load_state(
    tensor_bytes: bytes, json_bytes: bytes, *, limits: CodecLimits = DEFAULT_LIMITS,
    max_json_bytes: int = 256 * 1024 * 1024,
) -> Any:
    """Decode (safetensors bytes, JSON bytes) made by :func:`dump_state`; parses data only.

    Raises:
        StateCodecError: anything malformed, inconsistent or beyond the limits.

    """
    document = parse_json(json_bytes, what='state tree', max_bytes=max_json_bytes)
    return decode_state(load_tensors(tensor_bytes, limits=limits), document, limits=limits)
