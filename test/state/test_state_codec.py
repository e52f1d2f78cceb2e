"""The state codec: exact round trips, unambiguous keys, strict decoding of untrusted bytes."""

import json
import math
import pickle

import numpy as np
import pytest
import safetensors.torch
import torch

from cl_core_ros.core.state_codec import (
    check_safetensors_header,
    CodecLimits,
    decode_state,
    dump_state,
    encode_state,
    load_state,
    parse_json,
    StateCodecError,
)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int8, torch.uint8,
          torch.int16, torch.int32, torch.int64, torch.bool, torch.complex64, torch.uint16]


def round_trip(state, **kwargs):
    tensor_bytes, json_bytes = dump_state(state, **kwargs)
    return load_state(tensor_bytes, json_bytes, **kwargs)


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('shape', [(), (0,), (3, 0, 2), (5,), (2, 3, 4)], ids=str)
def test_tensor_dtype_and_shape_round_trip(dtype, shape, assert_same_state):
    tensor = (torch.arange(math.prod(shape)).reshape(shape) % 7).to(dtype)
    state = {'t': tensor}
    assert_same_state(round_trip(state), state)


def test_plain_values_and_containers_round_trip_exactly(assert_same_state):
    state = {
        'str': 'mug ☕ \ud800 "quoted"', 'int': 2 ** 70, 'neg': -3, 'float': 0.1, 'zero': -0.0,
        'nan': math.nan, 'inf': math.inf, '-inf': -math.inf, 'true': True, 'none': None,
        'list': [1, 'a', [2.5, None], ()], 'tuple': (1, (2, 3), [torch.ones(2)]),
        'dict': {'a': {'b': {}}}, 'empty_list': [],
        7: 'int key', -1: {0: torch.zeros(1)},
        'looks like a tag': {'$tensor': 't0', 'dtype': 'float32', 'shape': [1]},
        '$dict': [['x', 1]],
    }
    decoded = round_trip(state)
    assert_same_state(decoded, state)
    assert math.copysign(1.0, decoded['zero']) == -1.0
    assert isinstance(decoded['tuple'], tuple) and isinstance(decoded['list'][3], tuple)
    assert decoded[7] == 'int key' and 7 in decoded and '7' not in decoded


def test_keys_with_dots_and_slashes_are_unambiguous(assert_same_state):
    # These flatten to the same dotted path in naive schemes.
    state = {'a.b': torch.ones(1), 'a': {'b': torch.zeros(1)}, 'a/b': torch.full((1,), 2.0),
             'a.b/': {'': torch.full((1,), 3.0)}, '': torch.full((1,), 4.0)}
    tensors, document = encode_state(state)
    assert sorted(tensors) == ['t0', 't1', 't2', 't3', 't4']  # generated keys, no escaping
    assert_same_state(round_trip(state), state)


def test_tensors_are_detached_contiguous_cpu_copies(assert_same_state):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    parameter = torch.nn.Parameter(torch.ones(3))
    state = {'transposed': base.t(), 'slice': base[1:3], 'same': base, 'again': base,
             'param': parameter, 'negated_view': torch.ones(2)._neg_view()}
    decoded = round_trip(state)
    assert_same_state(decoded['transposed'], base.t().contiguous())
    assert_same_state(decoded['slice'], base[1:3].clone())
    assert_same_state(decoded['again'], base)
    assert type(decoded['param']) is torch.Tensor and not decoded['param'].requires_grad
    assert torch.equal(decoded['negated_view'], -torch.ones(2))
    decoded['same'][0, 0] = 100.0  # loaded tensors are writable and independent
    assert decoded['again'][0, 0] == 0.0


@pytest.mark.parametrize('value, message', [
    (np.zeros(3), 'unsupported type numpy.ndarray'),
    ({1, 2}, 'unsupported type builtins.set'),
    (object(), 'unsupported type builtins.object'),
    (b'bytes', 'unsupported type builtins.bytes'),
    ({True: 1}, 'only str and int keys'),
    ({(1, 2): 1}, 'only str and int keys'),
    (torch.zeros(2, 2).to_sparse(), 'sparse'),
    (torch.zeros(2, dtype=torch.complex128), 'cannot be stored'),
])
def test_unsupported_values_are_refused_with_their_path(value, message):
    with pytest.raises(StateCodecError, match=message) as caught:
        dump_state({'outer': {'bad': value}})
    assert "state['outer']['bad']" in str(caught.value)


def test_values_json_cannot_hold_are_refused():
    with pytest.raises(StateCodecError, match='cannot be written as JSON'):
        dump_state({'huge': 10 ** 5000})


def test_cycles_depth_and_counts_are_limited():
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(StateCodecError, match='cycle'):
        encode_state({'x': cyclic})
    deep: list = []
    node = deep
    for _ in range(100):
        node.append([])
        node = node[0]
    with pytest.raises(StateCodecError, match='nesting deeper'):
        encode_state({'x': deep})
    limits = CodecLimits(max_tensors=3)
    with pytest.raises(StateCodecError, match='more than 3 tensors'):
        encode_state({'x': [torch.zeros(1)] * 4}, limits=limits)
    shared = torch.zeros(1)
    tensors, _ = encode_state({'x': [shared, shared]})  # the same tensor twice is fine
    assert len(tensors) == 2


def _document(state):
    tensors, document = encode_state(state)
    return tensors, json.loads(json.dumps(document))


@pytest.mark.parametrize('tamper, message', [
    (lambda t, d: d.update(format='something else'), 'not a cl_core_ros state tree'),
    (lambda t, d: d.update(format_version=2), 'format version 2 is not supported'),
    (lambda t, d: d.update(tensor_count=5), 'declares 5 tensors'),
    (lambda t, d: t.update(t9=torch.zeros(1)) or d.update(tensor_count=3),
     'not referenced by the tree'),
    (lambda t, d: t.pop('t1') and t.update(t5=torch.zeros(1)), "'t1' is missing"),
    (lambda t, d: t.update(t0=torch.zeros(2, 2, dtype=torch.float64)),
     'is float64 \\[2, 2\\] in the tensor file but float32 \\[2, 3\\]'),
    (lambda t, d: d['root']['$dict'][1][1].update({'$tensor': 't0'}), 'referenced twice'),
    (lambda t, d: d['root']['$dict'].append(['a', 1]), "duplicate dict key 'a'"),
    (lambda t, d: d['root']['$dict'].append([True, 1]), 'malformed \\$dict entry'),
    (lambda t, d: d['root']['$dict'].append(['z', {'$pickle': 'x'}]), 'unknown or malformed'),
    (lambda t, d: d['root']['$dict'].append(['z', {'$float': 'NaNx'}]), 'unknown or malformed'),
    (lambda t, d: d['root']['$dict'].append(['z', {'$tensor': 1}]), 'malformed tensor node'),
    (lambda t, d: d.update(root={'$dict': 'x'}), 'must be a list'),
])
def test_decoding_rejects_inconsistent_documents(tamper, message):
    tensors, document = _document({'a': torch.zeros(2, 3), 'b': torch.ones(1)})
    tamper(tensors, document)
    with pytest.raises(StateCodecError, match=message):
        decode_state(tensors, document)


def test_json_parsing_is_strict_and_bounded():
    assert parse_json(b'{"a": [1, 2.5]}', what='x', max_bytes=100) == {'a': [1, 2.5]}
    with pytest.raises(StateCodecError, match='above the 10-byte limit'):
        parse_json(b'[' * 11, what='x', max_bytes=10)
    with pytest.raises(StateCodecError, match='nested too deeply'):
        parse_json(b'[' * 200_000 + b']' * 200_000, what='x', max_bytes=10 ** 6)
    with pytest.raises(StateCodecError, match='non-standard JSON constant NaN'):
        parse_json(b'[NaN]', what='x', max_bytes=100)
    with pytest.raises(StateCodecError, match='not UTF-8'):
        parse_json(b'\x80\x04', what='x', max_bytes=100)
    with pytest.raises(StateCodecError, match='not valid JSON'):
        parse_json(b'1' * 5000, what='x', max_bytes=10 ** 6)  # int digit limit


class _Payload:
    def __reduce__(self):
        return (print, ('pickle payload executed',))


@pytest.mark.parametrize('data, message', [
    (b'', 'too short'),
    (pickle.dumps(_Payload(), protocol=pickle.HIGHEST_PROTOCOL), 'not a safetensors file'),
    (pickle.dumps(_Payload(), protocol=0), 'not a safetensors file'),
    ((20).to_bytes(8, 'little') + b'{"a": 1}' + b' ' * 12, 'safetensors rejected'),
])
def test_tensor_bytes_other_than_safetensors_are_rejected(data, message, capsys):
    _, json_bytes = dump_state({})
    with pytest.raises(StateCodecError, match=message):
        load_state(data, json_bytes)
    assert 'executed' not in capsys.readouterr().out


def test_absurd_tensor_counts_are_refused_before_parsing():
    data = safetensors.torch.save({f't{i}': torch.zeros(0) for i in range(20)})
    assert check_safetensors_header(data) == len(data)
    with pytest.raises(StateCodecError, match='holds 20 tensors, above the limit of 10'):
        check_safetensors_header(data, limits=CodecLimits(max_tensors=10))
