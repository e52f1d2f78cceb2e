"""Commits that fail (disk full, file size limit, read-only directory) leave the store intact.

Each failure must raise StateStoreError naming the step, the path and the OS reason, leave no
partial version or temporary file behind, and keep the previous version current and loadable.
"""

import errno
import json
import math
import os
from pathlib import Path
import subprocess

import pytest
import torch

from cl_core_ros.core.state_store import StateStore, StateStoreError

HERE = Path(__file__).resolve().parent
PAGE = 4096


def _run(command: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError as error:
        return subprocess.CompletedProcess(command, 127, '', str(error))


def _assert_intact(root: Path, expected_state, assert_same_state, version: int = 1) -> None:
    """Only committed versions are there, the last current and valid, loading identically."""
    entries = sorted(os.listdir(root))
    assert entries == ['.lock', 'CURRENT', *(f'v{n:06d}' for n in range(1, version + 1))], entries
    store = StateStore(root)
    report = store.verify()
    assert report.ok and report.current == version, report.problems
    result = store.load_latest()
    assert result.info.version == version and result.problems == []
    assert_same_state(result.state, expected_state)


@pytest.fixture
def tmpfs(mount_tmpfs):
    """A real small filesystem (4 MiB tmpfs); skipped where mounting is not permitted."""
    return mount_tmpfs('4m')


def test_full_disk_fails_cleanly_whatever_write_hits_it(tmpfs, make_state, assert_same_state):
    root = tmpfs / 'state'
    store = StateStore(root)
    first = make_state(1)
    store.commit(first, change='lesson 1', classes=['a'])
    big = {'w': torch.arange(150_000, dtype=torch.float32)}  # about 600 kB

    # Clearly too big: the tensor file cannot be written.
    with pytest.raises(StateStoreError) as caught:
        store.commit({'w': torch.zeros(2_000_000)}, change='too big', classes=[])
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC
    assert 'commit of v000002 failed: could not write tensors.safetensors' in message
    assert str(root) in message and 'ENOSPC: No space left on device' in message
    assert 'Nothing was written; v000001 is still current.' in message
    _assert_intact(root, first, assert_same_state)

    # Leave just too few free pages for the tensor file, then one more page each time: the disk
    # fills while writing each file in turn, then while updating CURRENT (after the version was
    # published: it must be withdrawn), until the commit fits.
    tensor_pages = math.ceil(len(_encoded(big)) / PAGE)
    failed_steps = []
    for free_pages in range(tensor_pages - 1, tensor_pages + 5):
        filler = tmpfs / 'filler'
        filler.unlink(missing_ok=True)
        available = os.statvfs(tmpfs).f_bavail
        filler.write_bytes(b'\0' * (available - free_pages) * PAGE)
        assert os.statvfs(tmpfs).f_bavail == free_pages
        try:
            info = store.commit(big, change='lesson 2', classes=['a', 'b'])
        except StateStoreError as error:
            assert error.errno == errno.ENOSPC, error
            assert 'v000001 is still current' in str(error)
            failed_steps.append(str(error).split('could not ')[1].split(' (')[0])
            filler.unlink()
            _assert_intact(root, first, assert_same_state)
            continue
        filler.unlink()
        assert info.version == 2
        break
    else:
        pytest.fail('the commit never fitted')
    assert failed_steps == ['write tensors.safetensors', 'write state.json',
                            'write manifest.json', 'update CURRENT']
    _assert_intact(root, big, assert_same_state, version=2)


def _encoded(state) -> bytes:
    from cl_core_ros.core.state_codec import dump_state
    return dump_state(state)[0]


def test_file_size_limit_fails_cleanly(tmp_path, run_python, assert_same_state):
    root = tmp_path / 'state'
    result = run_python([str(HERE / 'state_fsize_worker.py'), str(root), str(1024 * 1024)],
                        check=True)
    outcome = json.loads(result.stdout)
    assert outcome['first'] == 1
    assert outcome['errno'] == errno.EFBIG
    assert 'commit of v000002 failed: could not write tensors.safetensors' in outcome['error']
    assert 'EFBIG: File too large' in outcome['error']
    assert outcome['path'].startswith(str(root / '.tmp-v000002-'))
    _assert_intact(root, {'w': torch.arange(1000, dtype=torch.float32)}, assert_same_state)


def _read_only_view(root: Path, tmp_path: Path, monkeypatch, request) -> tuple[Path, str]:
    """Return a read-only view of ``root`` and how it was made read-only.

    As a normal user, chmod 0500 is enough. As root it is not (root bypasses permissions: this
    is checked), so a read-only bind mount is used; if mounting is not permitted, EROFS is
    simulated by failing only os.mkdir/os.open-for-writing under the view (the narrowest
    patch that covers every write the store makes).
    """
    os.chmod(root, 0o500)
    request.addfinalizer(lambda: os.chmod(root, 0o700))
    probe = root / 'write-probe'
    try:
        probe.write_bytes(b'')
    except PermissionError:
        return root, 'chmod 0500'
    probe.unlink()
    view = tmp_path / 'read-only-view'
    view.mkdir()
    if _run(['mount', '--bind', str(root), str(view)]).returncode == 0:
        request.addfinalizer(lambda: _run(['umount', '-l', str(view)]))
        if _run(['mount', '-o', 'remount,ro,bind', str(view)]).returncode == 0:
            return view, 'read-only bind mount'
    view = root

    def refuse(path) -> OSError:
        return OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    real_mkdir, real_open = os.mkdir, os.open

    def mkdir(path, *args, **kwargs):
        if str(path).startswith(str(view)):
            raise refuse(path)
        return real_mkdir(path, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if str(path).startswith(str(view)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise refuse(path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, 'mkdir', mkdir)
    monkeypatch.setattr(os, 'open', open_)
    return view, 'simulated EROFS'


def test_read_only_directory_fails_cleanly(tmp_path, make_state, assert_same_state,
                                           monkeypatch, request):
    root = tmp_path / 'state'
    first = make_state(1)
    StateStore(root).commit(first, change='lesson 1', classes=['a'])
    leftover = root / '.tmp-v000002-1-0000'
    leftover.mkdir()
    view, how = _read_only_view(root, tmp_path, monkeypatch, request)
    print(f'read-only directory made by: {how}')
    store = StateStore(view)
    with pytest.raises(StateStoreError) as caught:
        store.commit(make_state(2), change='lesson 2', classes=['a', 'b'])
    message = str(caught.value)
    assert caught.value.errno in (errno.EROFS, errno.EACCES), (how, message)
    assert 'could not create the temporary version directory' in message, (how, message)
    assert str(view) in message and 'v000001 is still current' in message
    with pytest.raises(StateStoreError, match='v000001 is still current'):
        store.rollback(1)
    result = store.load_latest()  # reading a read-only store works
    assert result.info.version == 1, (how, result.problems)
    assert_same_state(result.state, first)
    if how == 'simulated EROFS':  # only creating is refused there: the leftover was removed
        assert not leftover.exists() and result.problems == [], result.problems
    else:  # a leftover that cannot be removed is reported, not hidden
        assert len(result.problems) == 1, result.problems
        problem = result.problems[0]
        assert f'could not remove the leftover of an interrupted commit {view}' in problem
        assert 'EROFS' in problem or 'EACCES' in problem, problem
        assert leftover.exists()
    monkeypatch.undo()
    os.chmod(root, 0o700)
    StateStore(root).load_latest()
    _assert_intact(root, first, assert_same_state)
