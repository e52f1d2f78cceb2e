"""The state store: round trips, numbering, pruning, listing, rollback, model signatures."""

import datetime
import json
import os
from pathlib import Path
import re
import stat
import threading

import pytest
import torch

from cl_core_ros.core.state_codec import CodecLimits
from cl_core_ros.core.state_store import (
    default_state_dir,
    IncompatibleStateError,
    StateStore,
    StateStoreError,
    StoreLimits,
)

SOURCES = [Path(__file__).resolve().parents[2] / 'src' / 'cl_core_ros' / path for path in (
    'core/state_store.py', 'core/state_codec.py', 'tools/state_cli.py')]
SIGNATURE = {'backbone': 'efficientnet_lite0', 'input_size': 128, 'deep_layer': 'blocks.5'}


def test_commit_then_load_gives_the_identical_state(tmp_path, make_state, assert_same_state):
    store = StateStore(tmp_path / 'state', model_signature=SIGNATURE)
    state = make_state(1)
    state['all dtypes'] = [torch.ones(2, dtype=dtype) for dtype in (
        torch.float64, torch.bfloat16, torch.int8, torch.int16, torch.int32, torch.bool)]
    state['scalar'] = torch.tensor(3.5)
    info = store.commit(state, change='learned mug', classes=['mug', 'cup'])
    assert (info.version, info.name, info.current, info.valid) == (1, 'v000001', True, True)
    assert info.classes == ('mug', 'cup') and info.change == 'learned mug'
    assert sorted(os.listdir(info.path)) == ['manifest.json', 'state.json', 'tensors.safetensors']
    assert (tmp_path / 'state' / 'CURRENT').read_text() == 'v000001\n'
    assert info.size_bytes == sum(p.stat().st_size for p in info.path.iterdir())

    result = StateStore(tmp_path / 'state', model_signature=SIGNATURE).load_latest()
    assert result.found and result.problems == []
    assert result.info.version == 1 and result.info.model_signature == SIGNATURE
    assert_same_state(result.state, state)


def test_empty_store_loads_nothing_without_problems(tmp_path):
    result = StateStore(tmp_path / 'fresh').load_latest()
    assert (result.state, result.info, result.problems, result.found) == (None, None, [], False)


def test_directory_is_created_private(tmp_path):
    root = tmp_path / 'a' / 'b' / 'state'
    StateStore(root)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert StateStore(root).root == root  # reopening an existing directory is fine


def test_default_state_dir_follows_ros_home(monkeypatch, tmp_path):
    monkeypatch.setenv('ROS_HOME', str(tmp_path / 'roshome'))
    assert default_state_dir() == tmp_path / 'roshome' / 'cl_core_ros' / 'state'
    monkeypatch.delenv('ROS_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    assert default_state_dir() == tmp_path / 'home' / '.ros' / 'cl_core_ros' / 'state'


def test_versions_are_numbered_pruned_and_listed(tmp_path, make_state):
    store = StateStore(tmp_path, keep=3)
    before = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
    for step in range(1, 7):
        info = store.commit(make_state(step), change=f'lesson {step}',
                            classes=[f'c{i}' for i in range(step)])
        assert info.version == step
    assert sorted(p.name for p in tmp_path.glob('v*')) == ['v000004', 'v000005', 'v000006']
    versions = store.list_versions()
    assert [v.version for v in versions] == [4, 5, 6]
    assert [v.current for v in versions] == [False, False, True]
    for info in versions:
        assert info.valid and info.problem is None
        assert info.change == f'lesson {info.version}'
        assert info.classes == tuple(f'c{i}' for i in range(info.version))
        assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z', info.created_utc)
        created = datetime.datetime.fromisoformat(info.created_utc.replace('Z', '+00:00'))
        assert before <= created <= datetime.datetime.now(datetime.UTC)
    assert store.current_version() == 6
    report = store.verify()
    assert report.ok and report.current == 6 and report.problems == []


def test_rollback_commits_a_copy_and_keeps_history(tmp_path, make_state, assert_same_state):
    store = StateStore(tmp_path, keep=10)
    for step in range(1, 4):
        store.commit(make_state(step), change=f'lesson {step}', classes=['a'] * step)
    info = store.rollback(1)
    assert (info.version, info.change, info.classes) == (4, 'rollback to v000001', ('a',))
    assert [v.version for v in store.list_versions()] == [1, 2, 3, 4]
    for name in ('tensors.safetensors', 'state.json'):  # a byte-exact copy
        assert (tmp_path / 'v000004' / name).read_bytes() == \
            (tmp_path / 'v000001' / name).read_bytes()
    result = store.load_latest()
    assert result.info.version == 4 and result.problems == []
    assert_same_state(result.state, make_state(1))
    state, v3 = store.load_version(3)
    assert_same_state(state, make_state(3))
    assert not v3.current
    with pytest.raises(StateStoreError, match='v000009: it does not exist'):
        store.rollback(9)
    with pytest.raises(StateStoreError, match='v000009 does not exist'):
        store.load_version(9)
    (tmp_path / 'v000002' / 'state.json').write_text('{}')
    with pytest.raises(StateStoreError, match='cannot roll back to v000002, it is invalid: '
                                              'v000002/state.json: size is 2 bytes'):
        store.rollback(2)
    assert store.current_version() == 4


def test_rollback_prunes_but_never_the_new_current(tmp_path, make_state, assert_same_state):
    store = StateStore(tmp_path, keep=2)
    for step in range(1, 4):
        store.commit(make_state(step), change=f'lesson {step}', classes=[])
    info = store.rollback(2)
    assert [v.version for v in store.list_versions()] == [3, 4]
    assert info.version == 4 and store.current_version() == 4
    assert_same_state(store.load_latest().state, make_state(2))


def test_bad_arguments_and_unencodable_states_write_nothing(tmp_path, make_state):
    store = StateStore(tmp_path)
    store.commit(make_state(0), change='first', classes=['a'])
    with pytest.raises(TypeError):
        store.commit([torch.zeros(1)], change='x', classes=[])
    with pytest.raises(TypeError):
        store.commit({}, change='x', classes='abc')
    with pytest.raises(StateStoreError, match=r"cannot encode the state: state\['buffer'\]: "
                                              'unsupported type numpy.ndarray'):
        import numpy as np
        store.commit({'buffer': np.zeros(3)}, change='x', classes=[])
    with pytest.raises(ValueError, match='keep must be at least 1'):
        StateStore(tmp_path, keep=0)
    with pytest.raises(ValueError, match='model_signature must be JSON data'):
        StateStore(tmp_path, model_signature={'x': object()})
    assert sorted(os.listdir(tmp_path)) == ['.lock', 'CURRENT', 'v000001']


def test_limits_refuse_absurd_states_on_commit_and_on_load(tmp_path, make_state):
    tiny = StoreLimits(codec=CodecLimits(max_tensors=3))
    with pytest.raises(StateStoreError, match='more than 3 tensors'):
        StateStore(tmp_path, limits=tiny).commit(make_state(0), change='x', classes=[])
    StateStore(tmp_path).commit(make_state(0), change='x', classes=[])
    result = StateStore(tmp_path, limits=tiny).load_latest()
    assert not result.found
    assert any('v000001/tensors.safetensors' in p and 'above the limit of 3' in p
               for p in result.problems)
    small_files = StoreLimits(max_tree_bytes=100)
    result = StateStore(tmp_path, limits=small_files).load_latest()
    assert any('v000001/state.json' in p and 'above the limit of 100' in p
               for p in result.problems)


def test_concurrent_commits_from_threads_get_distinct_valid_versions(tmp_path, make_state):
    store = StateStore(tmp_path, keep=20)
    errors = []

    def worker(offset):
        try:
            for step in range(4):
                store.commit(make_state(offset + step), change=f'{offset}', classes=[])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i * 10,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    versions = store.list_versions()
    assert [v.version for v in versions] == list(range(1, 13))
    assert all(v.valid for v in versions) and store.verify().ok


def test_other_model_signature_is_refused_naming_the_field(tmp_path, make_state, caplog):
    StateStore(tmp_path, model_signature=SIGNATURE).commit(make_state(0), change='a',
                                                            classes=['mug'])
    other = dict(SIGNATURE, input_size=224)
    store = StateStore(tmp_path, model_signature=other)
    with pytest.raises(IncompatibleStateError) as caught:
        store.load_latest()
    message = str(caught.value)
    assert "'input_size' differs: stored 128, this model 224" in message
    assert 'v000001' in message and caught.value.version == 1
    assert caught.value.differences == [
        "model signature field 'input_size' differs: stored 128, this model 224"]
    assert 'refused, written for another model' in caplog.text
    with pytest.raises(IncompatibleStateError, match='input_size'):
        store.load_version(1)
    with pytest.raises(IncompatibleStateError, match='input_size'):
        store.rollback(1)
    assert [v.version for v in store.list_versions()] == [1]  # refused, never removed

    extra = dict(SIGNATURE, replay='pool')
    with pytest.raises(IncompatibleStateError,
                       match="'replay' is missing in the stored version; this model has 'pool'"):
        StateStore(tmp_path, model_signature=extra).load_latest()
    fewer = {'backbone': 'efficientnet_lite0', 'input_size': 128}
    with pytest.raises(IncompatibleStateError,
                       match="'deep_layer' = 'blocks.5' in the stored version is unknown"):
        StateStore(tmp_path, model_signature=fewer).load_latest()
    typed = dict(SIGNATURE, input_size='128')
    with pytest.raises(IncompatibleStateError, match="stored 128, this model '128'"):
        StateStore(tmp_path, model_signature=typed).load_latest()
    assert StateStore(tmp_path).load_latest().found  # a store without signature accepts all
    # a field added after the version was written: its earlier behaviour is a value of it now
    assert StateStore(tmp_path, model_signature=extra,
                      signature_defaults={'replay': 'pool'}).load_latest().found
    with pytest.raises(IncompatibleStateError, match="'replay' differs: stored 'latent'"):
        StateStore(tmp_path, model_signature=extra,
                   signature_defaults={'replay': 'latent'}).load_latest()
    with pytest.raises(IncompatibleStateError, match="'input_size' differs"):  # stored wins
        StateStore(tmp_path, model_signature=typed,
                   signature_defaults={'input_size': '128'}).load_latest()


def test_newer_versions_of_another_model_are_skipped_not_lost(tmp_path, make_state,
                                                              assert_same_state):
    mobilenet = {'backbone': 'mobilenet_v1', 'input_size': 128, 'deep_layer': 'conv5_4'}
    StateStore(tmp_path, model_signature=SIGNATURE).commit(make_state(1), change='e', classes=[])
    StateStore(tmp_path, model_signature=mobilenet).commit(make_state(2), change='m', classes=[])
    result = StateStore(tmp_path, model_signature=SIGNATURE).load_latest()
    assert result.info.version == 1
    assert_same_state(result.state, make_state(1))
    assert any('v000002: refused' in p and
               "'backbone' differs: stored 'mobilenet_v1', this model 'efficientnet_lite0'" in p
               for p in result.problems)
    assert StateStore(tmp_path, model_signature=mobilenet).load_latest().info.version == 2
    listed = StateStore(tmp_path, model_signature=SIGNATURE).list_versions()
    assert [(v.version, v.valid, v.compatible) for v in listed] == [(1, True, True),
                                                                    (2, True, False)]
    assert 'backbone' in listed[1].problem


def test_the_50_class_benchmark_state_round_trips(tmp_path, assert_same_state):
    from cl_core_ros.tools.state_cli import make_benchmark_state
    state = make_benchmark_state(50)
    info = StateStore(tmp_path).commit(state, change='bench', classes=state['labels']['names'])
    assert 30e6 < info.size_bytes < 40e6
    manifest = json.loads((info.path / 'manifest.json').read_text())
    assert len(manifest['classes']) == 50
    assert_same_state(StateStore(tmp_path).load_latest().state, state)


def test_core_modules_are_ros_free_and_pickle_free(run_python):
    for source in SOURCES:
        text = source.read_text()
        assert not re.search(r'^\s*(import|from)\s+(pickle|dill|cloudpickle|rclpy)\b', text, re.M)
        # safetensors.torch.load(bytes) is the data-only parser; torch.load unpickles.
        assert not re.search(r'(?<![\w.])(torch|np|numpy|pickle)\.loads?\(', text)
    result = run_python(['-c', (
        'import sys; import cl_core_ros.core.state_store, cl_core_ros.core.state_codec; '
        'import cl_core_ros.tools.state_cli; '
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rcl', 'dill')))")],
        check=True)
    assert result.stdout.strip() == '[]'
