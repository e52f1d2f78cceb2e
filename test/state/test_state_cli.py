"""The state CLI, run as ``python -m cl_core_ros.tools.state_cli`` in real subprocesses."""

import json
import os

import pytest

from cl_core_ros.core.state_store import StateStore
from cl_core_ros.tools.state_cli import main

CLI = ['-m', 'cl_core_ros.tools.state_cli']


@pytest.fixture
def store_dir(tmp_path, make_state):
    root = tmp_path / 'state'
    store = StateStore(root)
    for step in (1, 2, 3):
        store.commit(make_state(step), change=f'lesson {step}',
                     classes=[f'object {i}' for i in range(step)])
    return root


def test_list_show_rollback_verify(store_dir, run_python, make_state, assert_same_state):
    listed = run_python([*CLI, '--state-dir', str(store_dir), 'list'], check=True).stdout
    rows = [line for line in listed.splitlines() if ' v00000' in line]
    assert [row.split()[0] for row in rows] == ['v000001', 'v000002', '*']
    assert 'v000003' in rows[2] and 'lesson 3' in rows[2] and ' ok ' in rows[2]
    assert 'classes: object 0, object 1, object 2' in listed

    shown = run_python([*CLI, 'show', 'v000002', '--state-dir', str(store_dir)],
                       check=True).stdout
    assert '"change": "lesson 2"' in shown and '"valid": true' in shown
    assert 'state.replay.pool/activations' in shown and 'tensor float32 [64, 32]' in shown
    assert 'state.meta.seed' in shown and 'tensor float16 [0, 4]' in shown

    rolled = run_python([*CLI, '--state-dir', str(store_dir), 'rollback', '1'], check=True)
    assert 'rolled back to v000001: new current version v000004 (1 classes)' in rolled.stdout
    result = StateStore(store_dir).load_latest()
    assert result.info.version == 4 and result.info.change == 'rollback to v000001'
    assert_same_state(result.state, make_state(1))

    verified = run_python([*CLI, '--state-dir', str(store_dir), 'verify'])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert '4 version(s), current v000004: OK' in verified.stdout

    with open(store_dir / 'v000002' / 'tensors.safetensors', 'r+b') as file:
        file.seek(200)
        file.write(b'\xff\xff')
    damaged = run_python([*CLI, '--state-dir', str(store_dir), 'verify'])
    assert damaged.returncode == 1
    assert 'v000002: INVALID: v000002/tensors.safetensors: sha256' in damaged.stdout
    assert '4 version(s), current v000004: 1 problem(s)' in damaged.stdout


def test_errors_and_json_listing_in_process(store_dir, tmp_path, capsys):
    assert main(['--state-dir', str(store_dir), 'list', '--json']) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v['name'], v['current'], v['valid']) for v in listed] == [
        ('v000001', False, True), ('v000002', False, True), ('v000003', True, True)]
    assert listed[1]['classes'] == ['object 0', 'object 1']

    os.truncate(store_dir / 'v000002' / 'state.json', 10)
    assert main(['--state-dir', str(store_dir), 'show', '2']) == 1
    assert 'error: v000002 is invalid: v000002/state.json: size is 10 bytes' in \
        capsys.readouterr().err
    assert main(['--state-dir', str(store_dir), 'rollback', '2']) == 1
    assert 'cannot roll back to v000002, it is invalid' in capsys.readouterr().err
    assert main(['--state-dir', str(store_dir), 'rollback', '9']) == 1
    assert 'v000009: it does not exist' in capsys.readouterr().err
    assert main(['--state-dir', str(tmp_path / 'nowhere'), 'list']) == 1
    assert 'no state directory at' in capsys.readouterr().err
    assert not (tmp_path / 'nowhere').exists()
    with pytest.raises(SystemExit) as caught:
        main(['--state-dir', str(store_dir), 'show', 'latest'])
    assert caught.value.code == 2
    assert StateStore(store_dir).current_version() == 3  # failed commands changed nothing


def test_bench_reports_commit_time_and_size(tmp_path, run_python):
    bench_dir = tmp_path / 'bench'
    bench_dir.mkdir()
    result = run_python([*CLI, 'bench', '--state-dir', str(bench_dir), '--repeats', '2',
                         '--json'], check=True, timeout=120)
    report = json.loads(result.stdout)
    assert report['classes'] == 50 and report['repeats'] == 2
    assert 30e6 < report['bytes_per_version'] < 40e6
    assert 0 < report['commit_seconds_min'] <= report['commit_seconds_median']
    assert report['load_latest_seconds'] > 0
    assert os.listdir(bench_dir) == []  # benchmark versions are removed afterwards
