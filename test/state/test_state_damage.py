"""Damaged, tampered or half-written state directories: reported clearly, older version loaded.

Every case damages the newest of three versions and checks that: the problem names the version,
the file and the reason; the previous version loads, identical; the damaged version is still on
disk (nothing is deleted behind the user's back); a pickle payload is never executed.
"""

import hashlib
import json
import logging
import os
from pathlib import Path
import pickle

import pytest
import torch

from cl_core_ros.core.state_store import _manifest_digest, StateStore


class _CreatesMarker:
    """Unpickling this object creates a marker file: proof of code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), 'w'))


def pickle_payload(marker: Path, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    return pickle.dumps({'weights': _CreatesMarker(marker)}, protocol=protocol)


def torch_save_payload(marker: Path, tmp_path: Path) -> bytes:
    path = tmp_path / 'payload.pt'
    torch.save({'weights': torch.zeros(2), 'evil': _CreatesMarker(marker)}, path)
    return path.read_bytes()


def replace_and_fix_manifest(version_dir: Path, name: str, data: bytes) -> None:
    """Replace a file AND update the manifest consistently: checksums alone cannot catch it."""
    (version_dir / name).write_bytes(data)
    manifest_path = version_dir / 'manifest.json'
    manifest = json.loads(manifest_path.read_text())
    manifest['files'][name] = {'sha256': hashlib.sha256(data).hexdigest(), 'size': len(data)}
    manifest['manifest_sha256'] = _manifest_digest(manifest)
    manifest_path.write_text(json.dumps(manifest))


def flip_bytes(path: Path, offset_fraction: float = 0.5, count: int = 4) -> None:
    data = bytearray(path.read_bytes())
    start = int(len(data) * offset_fraction)
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def three_versions(tmp_path, make_state):
    root = tmp_path / 'state'
    store = StateStore(root)
    for step in (1, 2, 3):
        store.commit(make_state(step), change=f'lesson {step}', classes=[f'c{step}'])
    return root


def _symlink_version(version_dir: Path, marker: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / 'elsewhere'
    os.rename(version_dir, elsewhere)
    os.symlink(elsewhere, version_dir)


def _inconsistent_tree(version_dir: Path, marker: Path, tmp_path: Path) -> None:
    tree = json.loads((version_dir / 'state.json').read_text())
    tree['root']['$dict'][0][1]['$dict'][0][1]['shape'] = [99, 32]
    replace_and_fix_manifest(version_dir, 'state.json', json.dumps(tree).encode())


DAMAGE = {
    'flipped tensor bytes': (
        lambda v, m, t: flip_bytes(v / 'tensors.safetensors'),
        'v000003/tensors.safetensors', 'sha256'),
    'flipped state.json bytes': (
        lambda v, m, t: flip_bytes(v / 'state.json', 0.3, 1),
        'v000003/state.json', 'does not match the manifest'),
    'edited manifest': (
        lambda v, m, t: (v / 'manifest.json').write_text(
            (v / 'manifest.json').read_text().replace('lesson 3', 'lesson X')),
        'v000003/manifest.json', 'does not match its own checksum'),
    'garbage manifest': (
        lambda v, m, t: (v / 'manifest.json').write_bytes(b'\x00\x01garbage'),
        'v000003/manifest.json', 'not valid JSON'),
    'truncated tensor file': (
        lambda v, m, t: os.truncate(v / 'tensors.safetensors', 100),
        'v000003/tensors.safetensors', 'size is 100 bytes but the manifest says'),
    'manifest checksum mismatch': (
        lambda v, m, t: _set_manifest_sha(v, 'state.json', '0' * 64),
        'v000003/state.json', 'does not match the manifest (0000000000000000...)'),
    'missing state.json': (
        lambda v, m, t: os.unlink(v / 'state.json'),
        'v000003/state.json', 'the file is missing'),
    'missing manifest': (
        lambda v, m, t: os.unlink(v / 'manifest.json'),
        'v000003/manifest.json', 'the file is missing'),
    'unexpected extra file': (
        lambda v, m, t: (v / 'model.pt').write_bytes(b'x'),
        'v000003/model.pt', 'unexpected file'),
    'pickle as tensor file': (
        lambda v, m, t: (v / 'tensors.safetensors').write_bytes(pickle_payload(m)),
        'v000003/tensors.safetensors', 'the manifest says'),
    'pickle as tensor file, manifest fixed': (
        lambda v, m, t: replace_and_fix_manifest(v, 'tensors.safetensors', pickle_payload(m)),
        'v000003/tensors.safetensors', 'not a safetensors file'),
    'torch.save zip as tensor file, manifest fixed': (
        lambda v, m, t: replace_and_fix_manifest(v, 'tensors.safetensors',
                                                 torch_save_payload(m, t)),
        'v000003/tensors.safetensors', 'not a safetensors file'),
    'pickle as state.json, manifest fixed': (
        lambda v, m, t: replace_and_fix_manifest(v, 'state.json', pickle_payload(m, 0)),
        'v000003/state.json', 'not valid JSON'),
    'binary pickle as state.json, manifest fixed': (
        lambda v, m, t: replace_and_fix_manifest(v, 'state.json', pickle_payload(m)),
        'v000003/state.json', 'not UTF-8'),
    'tree inconsistent with tensors, manifest fixed': (
        _inconsistent_tree, 'v000003/state.json', 'in the tensor file but float32 [99, 32]'),
    'version directory is a symlink': (
        _symlink_version, 'v000003', 'not a directory (or a symbolic link)'),
}


def _set_manifest_sha(version_dir: Path, name: str, sha: str) -> None:
    manifest_path = version_dir / 'manifest.json'
    manifest = json.loads(manifest_path.read_text())
    manifest['files'][name]['sha256'] = sha
    manifest['manifest_sha256'] = _manifest_digest(manifest)
    manifest_path.write_text(json.dumps(manifest))


def test_pickle_payloads_used_here_do_execute_code(tmp_path):
    marker = tmp_path / 'proof'
    pickle.loads(pickle_payload(marker))  # the payload is live: loading it runs code
    assert marker.exists()


@pytest.mark.parametrize('case', list(DAMAGE))
def test_damaged_newest_version_is_reported_and_previous_loads(
        case, three_versions, tmp_path, make_state, assert_same_state, caplog):
    damage, where, why = DAMAGE[case]
    marker = tmp_path / 'code-was-executed'
    damage(three_versions / 'v000003', marker, tmp_path)

    with caplog.at_level(logging.WARNING, logger='cl_core_ros.core.state_store'):
        result = StateStore(three_versions).load_latest()

    assert result.found and result.info.version == 2
    assert_same_state(result.state, make_state(2))
    problem = next((p for p in result.problems if p.startswith(where)), None)
    assert problem is not None, result.problems
    assert why in problem and 'skipped' in problem, problem
    assert any('loaded v000002 instead of v000003' in p for p in result.problems)
    assert problem in caplog.text  # logged as a warning too
    assert not marker.exists(), 'a pickle payload was executed'
    assert os.path.lexists(three_versions / 'v000003'), 'the damaged version must not be deleted'

    store = StateStore(three_versions)
    listed = {info.version: info for info in store.list_versions()}
    assert listed[2].valid and not listed[3].valid and listed[3].problem.startswith(where)
    report = store.verify()
    assert not report.ok and any(p.startswith(where) for p in report.problems)
    assert not marker.exists()
    # The next lesson never reuses the damaged version's number.
    assert store.commit(make_state(4), change='lesson 4', classes=[]).version == 4
    assert store.load_latest().info.version == 4


def test_several_damaged_versions_fall_back_further(three_versions, make_state,
                                                    assert_same_state):
    flip_bytes(three_versions / 'v000003' / 'tensors.safetensors')
    os.truncate(three_versions / 'v000002' / 'state.json', 3)
    result = StateStore(three_versions).load_latest()
    assert result.info.version == 1
    assert_same_state(result.state, make_state(1))
    assert [p.split(':')[0] for p in result.problems[:2]] == [
        'v000003/tensors.safetensors', 'v000002/state.json']


def test_nothing_valid_loads_nothing_and_says_why(three_versions):
    for version in ('v000001', 'v000002', 'v000003'):
        os.unlink(three_versions / version / 'tensors.safetensors')
    result = StateStore(three_versions).load_latest()
    assert not result.found
    assert sum('tensors.safetensors: the file is missing' in p for p in result.problems) == 3


@pytest.mark.parametrize('content, message', [
    (b'\x00\xffgarbage\n', "CURRENT holds garbage (b'\\x00\\xffgarbage\\n')"),
    (b'v3\n', 'CURRENT holds garbage'),
    (b'v000009\n', 'CURRENT names v000009, which does not exist'),
    (b'x' * 1000, 'CURRENT cannot be read'),
    (None, 'CURRENT is missing'),
])
def test_bad_current_pointer_falls_back_to_the_newest_valid(
        content, message, three_versions, make_state, assert_same_state):
    current = three_versions / 'CURRENT'
    if content is None:
        current.unlink()
    else:
        current.write_bytes(content)
    result = StateStore(three_versions).load_latest()
    assert result.info.version == 3
    assert_same_state(result.state, make_state(3))
    assert any(message in p for p in result.problems), result.problems
    assert sorted(p.name for p in three_versions.glob('v*')) == ['v000001', 'v000002', 'v000003']


def test_current_pointing_at_a_damaged_version_loads_the_one_before(three_versions):
    flip_bytes(three_versions / 'v000003' / 'state.json', 0.5, 1)
    result = StateStore(three_versions).load_latest()
    assert result.info.version == 2
    assert any('loaded v000002 instead of v000003 (the version CURRENT names)' in p
               for p in result.problems)


def test_leftovers_of_interrupted_commits_are_removed_and_reported(
        three_versions, make_state, assert_same_state):
    partial = three_versions / '.tmp-v000004-4242-deadbeef'
    partial.mkdir()
    (partial / 'tensors.safetensors').write_bytes(b'\x00' * 1000)
    (three_versions / 'CURRENT.tmp-4242-cafe').write_bytes(b'v0000')
    trash = three_versions / '.del-v000001-12345678'
    (trash / 'sub').mkdir(parents=True)
    # A complete version that was renamed into place but never made current (crash between
    # publishing and updating CURRENT): it was never acknowledged.
    os.rename(three_versions / 'v000003', three_versions / 'v000004')
    (three_versions / 'CURRENT').write_text('v000002\n')

    report = StateStore(three_versions).verify()  # read-only: reports, removes nothing
    assert not report.ok
    assert sum('leftover of an interrupted' in p for p in report.problems) == 3
    assert any('v000004: newer than CURRENT' in p for p in report.problems)
    assert partial.exists()

    result = StateStore(three_versions).load_latest()
    assert result.info.version == 2
    assert_same_state(result.state, make_state(2))
    text = '\n'.join(result.problems)
    assert 'removed the leftover of an interrupted commit .tmp-v000004-4242-deadbeef' in text
    assert 'removed the leftover of an interrupted commit CURRENT.tmp-4242-cafe' in text
    assert 'removed the leftover of an interrupted prune .del-v000001-12345678' in text
    assert 'version newer than CURRENT (v000002)' in text
    assert sorted(os.listdir(three_versions)) == ['.lock', 'CURRENT', 'v000001', 'v000002']
    assert StateStore(three_versions).verify().ok
