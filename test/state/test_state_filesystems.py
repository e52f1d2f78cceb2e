"""The state store on every filesystem a robot or a laptop mounts: it works, or refuses at start.

NFS, SMB, 9p/drvfs, overlayfs and FUSE mounts are simulated (see ``test/fs_sim.py``: only their
errno behaviour is reproduced, on a real directory); mountinfo parsing is tested on real text.
"""

import errno
import os

from fs_sim import Behaviour, BEHAVIOURS, SimulatedMount
import pytest
import torch

from cl_core_ros.core.filesystems import filesystem_family, mount_of, parse_mountinfo
from cl_core_ros.core.state_store import StateStore, StateStoreError

MOUNTINFO = r"""27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 27 0:28 / /mnt/robot\040state rw,relatime - nfs4 server:/robot rw,vers=4.2,hard
32 27 0:29 / /mnt/c rw,noatime - 9p drvfs rw,aname=drvfs;path=C:\;uid=1000
33 27 0:30 / /mnt/nas rw,relatime - cifs //nas/robot rw,vers=3.1.1
34 27 0:31 / /home/u/remote rw,nosuid - fuse.sshfs u@host:/state rw,user_id=1000
35 27 0:32 / /var/lib/docker/x ro,relatime - overlay overlay ro,lowerdir=/a
36 31 0:33 / /mnt/robot\040state/inner rw - tmpfs tmpfs rw,size=4k
garbage line
"""

# What each simulated filesystem must report: (locking, directory fsync, atomic replace).
EXPECTED = {
    'ext4': ('flock', True, True), 'xfs': ('flock', True, True),
    'btrfs': ('flock', True, True), 'tmpfs': ('flock', True, True),
    'nfs3': ('flock', True, True), 'nfs4': ('flock', True, True),
    'nfs3-nolock': ('process', True, True), 'cifs': ('flock', False, True),
    'cifs-no-replace': ('flock', False, False), '9p': ('flock', False, True),
    'drvfs': ('flock', False, True), 'overlay': ('flock', True, True),
    'fuse.sshfs': ('process', False, True), 'fuse.rclone': ('process', False, False),
}


def test_mountinfo_is_parsed_with_escapes_and_the_innermost_mount_wins():
    mounts = parse_mountinfo(MOUNTINFO)
    assert [m.fs_type for m in mounts] == ['ext4', 'nfs4', '9p', 'cifs', 'fuse.sshfs',
                                           'overlay', 'tmpfs']
    nfs = mount_of('/mnt/robot state/cl/state', MOUNTINFO)
    assert (nfs.fs_type, str(nfs.mount_point), nfs.source) == (
        'nfs4', '/mnt/robot state', 'server:/robot')
    assert mount_of('/mnt/robot state/inner/x', MOUNTINFO).fs_type == 'tmpfs'
    assert mount_of('/mnt/robot statex', MOUNTINFO).fs_type == 'ext4'
    assert mount_of('/var/lib/docker/x/s', MOUNTINFO).read_only
    assert {filesystem_family(m.fs_type) for m in mounts} == {
        'local', 'nfs', '9p', 'smb', 'fuse', 'overlay', 'memory'}
    assert filesystem_family('fuseblk') == 'fuse' and filesystem_family('zonefs') == 'unknown'


def test_the_real_mount_of_a_state_directory_is_found(tmp_path):
    mount = mount_of(tmp_path / 'not yet created')
    assert mount is not None and mount.fs_type and (
        tmp_path == mount.mount_point or mount.mount_point in tmp_path.resolve().parents)
    report = StateStore(tmp_path / 'state').probe()
    assert report.fs_type == mount.fs_type and sorted(os.listdir(tmp_path / 'state')) == [
        '.lock']


@pytest.mark.parametrize('name', sorted(BEHAVIOURS))
def test_the_store_works_on_each_filesystem(name, tmp_path, monkeypatch, make_state,
                                            assert_same_state):
    root = tmp_path / 'state'
    sim = SimulatedMount(tmp_path, BEHAVIOURS[name], monkeypatch)
    # As a learner does: probe at start, then lessons, each from a store reopened after the
    # first (the lock file exists by then: NFS refused that before).
    report = StateStore(root).probe()
    locking, directory_sync, atomic_replace = EXPECTED[name]
    assert (report.locking, report.directory_sync, report.atomic_replace) == EXPECTED[name], (
        report, sim.calls)
    assert report.fs_type == BEHAVIOURS[name].fs_type
    family = report.family
    weaker = family in ('memory', 'nfs', 'smb', '9p', 'fuse') or not directory_sync or (
        locking == 'process') or not atomic_replace
    assert report.guarantee == ('weaker' if weaker else 'full'), report.weaker
    assert report.fs_type in report.summary()
    for version in (1, 2, 3):
        store = StateStore(root, keep=2)
        info = store.commit(make_state(version), change=f'lesson {version}',
                            classes=['a'] * version)
        assert info.version == version
    assert sorted(os.listdir(root)) == ['.lock', 'CURRENT', 'v000002', 'v000003']
    result = StateStore(root).load_latest()
    assert result.info.version == 3 and result.problems == []
    assert_same_state(result.state, make_state(3))
    assert StateStore(root).verify().ok
    assert StateStore(root).rollback(2).version == 4


def test_nfs_lock_file_is_opened_read_write(tmp_path, monkeypatch, make_state):
    sim = SimulatedMount(tmp_path, BEHAVIOURS['nfs4'], monkeypatch)
    StateStore(tmp_path / 's').commit(make_state(1), change='1', classes=[])
    StateStore(tmp_path / 's').commit(make_state(2), change='2', classes=[])
    assert sim.calls == []  # never asked NFS for a lock on a read-only descriptor
    lock_opens = [flags for path, flags in sim.fds.values() if path.endswith('.lock')]
    assert all(flags & os.O_ACCMODE == os.O_RDWR for flags in lock_opens)


def test_nfs_read_only_directory_is_still_readable(tmp_path, monkeypatch, make_state,
                                                   assert_same_state):
    root = tmp_path / 's'
    StateStore(root).commit(make_state(1), change='1', classes=[])
    SimulatedMount(tmp_path, Behaviour('nfs4', 'server:/ro', flock_rdonly_ebadf=True,
                                       read_only=True), monkeypatch)
    result = StateStore(root).load_latest()  # no lock possible: read without it
    assert result.info.version == 1
    assert_same_state(result.state, make_state(1))
    assert StateStore(root).verify().ok


@pytest.mark.parametrize('fs_type, code, hint', [
    ('nfs4', errno.EROFS, 'mounted read-only'),
    ('cifs', errno.EROFS, 'mounted read-only'),
    ('ext4', errno.EROFS, 'mounted read-only'),
])
def test_a_read_only_mount_is_refused_at_start_naming_the_filesystem(
        fs_type, code, hint, tmp_path, monkeypatch, make_state):
    root = tmp_path / 'state'
    StateStore(root).commit(make_state(1), change='1', classes=[])
    SimulatedMount(tmp_path, Behaviour(fs_type, 'server:/x', read_only=True), monkeypatch)
    with pytest.raises(StateStoreError) as caught:
        StateStore(root).probe()
    message = str(caught.value)
    assert caught.value.errno == code, message
    assert f'{fs_type} (server:/x at {tmp_path.resolve()})' in message, message
    assert hint in message and 'EROFS' in message and 'state_dir' in message
    assert [n for n in os.listdir(root) if n.startswith('.tmp')] == []


@pytest.mark.parametrize('code, hint', [(errno.ENOSPC, 'is full'),
                                        (errno.EDQUOT, 'quota is used up')])
@pytest.mark.parametrize('where', ['fsync', 'close'])
def test_full_disk_or_quota_is_refused_at_start(code, hint, where, tmp_path, monkeypatch):
    # NFS reports a full export or an exhausted quota only when the data is flushed: at fsync
    # or at close.
    SimulatedMount(tmp_path, Behaviour('nfs4', 'server:/q', write_errno_at={where: code}),
                   monkeypatch)
    with pytest.raises(StateStoreError) as caught:
        StateStore(tmp_path / 'state').probe()
    assert caught.value.errno == code and hint in str(caught.value), str(caught.value)
    assert 'nfs4 (server:/q' in str(caught.value)
    assert sorted(os.listdir(tmp_path / 'state')) == ['.lock']


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EDQUOT])
@pytest.mark.parametrize('where', ['fsync', 'close'])
def test_quota_or_full_export_at_commit_fails_cleanly(code, where, tmp_path, monkeypatch,
                                                      make_state, assert_same_state):
    root = tmp_path / 'state'
    StateStore(root).commit(make_state(1), change='1', classes=['a'])
    SimulatedMount(tmp_path, Behaviour('nfs4', 'server:/q', flock_rdonly_ebadf=True,
                                       write_errno_at={where: code}), monkeypatch)
    with pytest.raises(StateStoreError) as caught:
        StateStore(root).commit(make_state(2), change='2', classes=['a', 'b'])
    assert caught.value.errno == code
    assert 'v000001 is still current' in str(caught.value)
    monkeypatch.undo()
    assert sorted(os.listdir(root)) == ['.lock', 'CURRENT', 'v000001']
    result = StateStore(root).load_latest()
    assert result.info.version == 1 and result.problems == []
    assert_same_state(result.state, make_state(1))


def test_nfs_silly_renamed_files_do_not_invalidate_a_version(tmp_path, make_state):
    # A file removed while a reader still has it open becomes .nfsXXXX on an NFS client.
    store = StateStore(tmp_path / 's', keep=1)
    info = store.commit(make_state(1), change='1', classes=[])
    (info.path / '.nfs0000000000b1f2a900000001').write_bytes(b'old tensors')
    result = StateStore(tmp_path / 's').load_latest()
    assert result.info.version == 1 and result.problems == []
    assert StateStore(tmp_path / 's').verify().ok


def test_overlay_lower_layer_versions_are_pruned_in_place(tmp_path, monkeypatch, make_state):
    # A state directory baked into a container image: its versions are in the lower layer.
    root = tmp_path / 'state'
    for version in (1, 2):
        StateStore(root).commit(make_state(version), change=str(version), classes=[])
    sim = SimulatedMount(tmp_path, BEHAVIOURS['overlay'], monkeypatch)
    store = StateStore(root, keep=1)
    assert store.commit(make_state(3), change='3', classes=[]).version == 3
    assert any('EXDEV' in call for call in sim.calls), sim.calls
    assert sorted(os.listdir(root)) == ['.lock', 'CURRENT', 'v000003']


def test_a_commit_point_replaced_by_unlink_and_rename_survives_a_crash_between(
        tmp_path, monkeypatch, make_state, assert_same_state):
    root = tmp_path / 'state'
    sim = SimulatedMount(tmp_path, BEHAVIOURS['cifs-no-replace'], monkeypatch)
    StateStore(root).commit(make_state(1), change='1', classes=[])
    store = StateStore(root)
    real_rename = os.rename

    def fail_after_unlink(src, dst, **kwargs):  # the share goes away between the two calls
        if str(dst).endswith('CURRENT') and not str(src).endswith('probe'):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        return real_rename(src, dst, **kwargs)

    monkeypatch.setattr(os, 'rename', fail_after_unlink)
    with pytest.raises(StateStoreError, match='v000001 is still current'):
        store.commit(make_state(2), change='2', classes=[])
    assert any('rename over an existing file' in call for call in sim.calls)
    monkeypatch.setattr(os, 'rename', real_rename)
    assert (root / 'CURRENT').read_text() == 'v000001\n'  # restored by the failed commit
    # Killed between unlink and rename instead: the new version is published, CURRENT is
    # gone; the newest valid version is the one the commit was making current.
    store.commit(make_state(2), change='2', classes=[])
    (root / 'CURRENT').unlink()
    result = StateStore(root).load_latest()
    assert result.info.version == 2 and 'CURRENT is missing' in result.problems[0]
    assert_same_state(result.state, make_state(2))


def test_the_store_never_uses_o_direct(tmp_path, monkeypatch, make_state):
    # tmpfs (and several FUSE filesystems) refuse O_DIRECT with EINVAL.
    sim = SimulatedMount(tmp_path, BEHAVIOURS['tmpfs'], monkeypatch)
    store = StateStore(tmp_path / 's')
    store.probe()
    store.commit({'w': torch.ones(3)}, change='1', classes=[])
    assert store.load_latest().info.version == 1 and sim.calls == []


def test_weaker_guarantees_found_during_commits_are_reported(tmp_path, monkeypatch,
                                                             make_state, caplog):
    SimulatedMount(tmp_path, BEHAVIOURS['9p'], monkeypatch)
    store = StateStore(tmp_path / 's')  # a tool that never probed
    store.commit(make_state(1), change='1', classes=[])
    report = store.filesystem_report()
    assert not report.directory_sync and report.guarantee == 'weaker'
    assert any('fsync of a directory is not supported (EINVAL' in w for w in report.weaker)
    assert sum('weaker guarantee' in r.message for r in caplog.records) == 1  # logged once
