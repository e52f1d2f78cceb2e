"""Simulated errno behaviour of the filesystems a state directory may live on.

No NFS server, SMB share, WSL host or FUSE daemon exists on the test machines, so the
behaviours that differ from a local disk are simulated on a real directory: the OS calls the
state store makes (``os.open``, ``os.fsync``, ``os.close``, ``os.replace``, ``os.rename``,
``os.mkdir``, ``fcntl.flock``, ``fcntl.lockf``) are wrapped, and only calls on paths under the
simulated mount (or descriptors opened there) behave like that filesystem. Each behaviour is
one that public bug reports of the filesystem describe; the mount itself is reported to the
store with the filesystem's type (``mount_of`` is patched in ``state_store``).
"""

from dataclasses import dataclass, field
import errno
import fcntl
import os
from pathlib import Path

from cl_core_ros.core import state_store
from cl_core_ros.core.filesystems import MountInfo


@dataclass
class Behaviour:
    """What a simulated filesystem does differently from a local disk."""

    fs_type: str
    source: str = 'simulated'
    flock_rdonly_ebadf: bool = False      # NFS: flock(LOCK_EX) on an O_RDONLY fd -> EBADF
    flock_errno: int | None = None        # no flock at all (ENOLCK, EOPNOTSUPP, ENOSYS)
    lockf_errno: int | None = None        # no POSIX record locks either
    dir_fsync_errno: int | None = None    # CIFS, 9p, drvfs: fsync of a directory -> EINVAL
    replace_errno: int | None = None      # rename over an existing file refused
    lower_dirs_exdev: bool = False        # overlayfs: directories of the lower layer -> EXDEV
    o_direct_einval: bool = False         # tmpfs: O_DIRECT -> EINVAL
    read_only: bool = False               # a read-only mount: EROFS on every write
    write_errno_at: dict[str, int] = field(default_factory=dict)  # 'fsync'/'close' -> errno


BEHAVIOURS = {
    'ext4': Behaviour('ext4', '/dev/sda2'),
    'xfs': Behaviour('xfs', '/dev/nvme0n1p3'),
    'btrfs': Behaviour('btrfs', '/dev/nvme0n1p2'),
    'tmpfs': Behaviour('tmpfs', 'tmpfs', o_direct_einval=True),
    'nfs3': Behaviour('nfs', 'server:/export/robot', flock_rdonly_ebadf=True),
    'nfs4': Behaviour('nfs4', 'server:/robot', flock_rdonly_ebadf=True),
    'nfs3-nolock': Behaviour('nfs', 'server:/export/robot', flock_errno=errno.ENOLCK,
                             lockf_errno=errno.ENOLCK),
    'cifs': Behaviour('cifs', '//nas/robot', dir_fsync_errno=errno.EINVAL),
    'cifs-no-replace': Behaviour('cifs', '//winserver/robot', dir_fsync_errno=errno.EINVAL,
                                 replace_errno=errno.EEXIST),
    '9p': Behaviour('9p', 'drvfs', dir_fsync_errno=errno.EINVAL),  # WSL2 /mnt/c
    'drvfs': Behaviour('drvfs', 'C:\\', dir_fsync_errno=errno.EINVAL),  # WSL1
    'overlay': Behaviour('overlay', 'overlay', lower_dirs_exdev=True),
    'fuse.sshfs': Behaviour('fuse.sshfs', 'robot@host:/state', flock_errno=errno.ENOSYS,
                            lockf_errno=errno.ENOSYS, dir_fsync_errno=errno.ENOSYS),
    'fuse.rclone': Behaviour('fuse.rclone', 'remote:state', flock_errno=errno.EOPNOTSUPP,
                             lockf_errno=errno.EOPNOTSUPP, dir_fsync_errno=errno.EINVAL,
                             replace_errno=errno.EPERM),
}


class SimulatedMount:
    """Make ``root`` (and everything under it) behave like ``behaviour``'s filesystem."""

    def __init__(self, root: Path, behaviour: Behaviour, monkeypatch):
        self.root = Path(os.path.realpath(root))
        self.b = behaviour
        self.fds: dict[int, tuple[str, int]] = {}  # fd -> (path, flags), opened under root
        self.lower = set()  # directories present when the overlay was "built"
        self.calls: list[str] = []  # the simulated refusals, for the tests to check
        if behaviour.lower_dirs_exdev and self.root.is_dir():
            self.lower = {str(p) for p in self.root.rglob('*') if p.is_dir()}
        real = {name: getattr(os, name) for name in
                ('open', 'fsync', 'close', 'replace', 'rename', 'mkdir')}
        real_flock, real_lockf = fcntl.flock, fcntl.lockf
        self._real = real
        mount = MountInfo(mount_point=self.root, fs_type=behaviour.fs_type,
                          source=behaviour.source,
                          options=frozenset({'ro' if behaviour.read_only else 'rw'}))
        monkeypatch.setattr(state_store, 'mount_of', lambda path, mountinfo=None: mount)

        def fail(code: int, what: str, path='') -> OSError:
            self.calls.append(f'{what}: {errno.errorcode[code]}')
            return OSError(code, os.strerror(code), str(path))

        def open_(path, flags, *args, **kwargs):
            inside = self._inside(path, kwargs.get('dir_fd'))
            if inside and self.b.read_only and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                raise fail(errno.EROFS, 'open for writing', path)
            if inside and self.b.o_direct_einval and flags & getattr(os, 'O_DIRECT', 0):
                raise fail(errno.EINVAL, 'open with O_DIRECT', path)
            fd = real['open'](path, flags, *args, **kwargs)
            if inside:
                self.fds[fd] = (str(path), flags)
            return fd

        def fsync(fd):
            if fd in self.fds:
                path, flags = self.fds[fd]
                if flags & os.O_DIRECTORY and self.b.dir_fsync_errno:
                    raise fail(self.b.dir_fsync_errno, 'fsync of a directory', path)
                code = self.b.write_errno_at.get('fsync')
                if code and not flags & os.O_DIRECTORY and flags & (os.O_WRONLY | os.O_RDWR):
                    raise fail(code, 'fsync', path)
            return real['fsync'](fd)

        def close(fd):
            entry = self.fds.pop(fd, None)
            real['close'](fd)
            code = self.b.write_errno_at.get('close')
            if entry and code and entry[1] & os.O_WRONLY and not entry[1] & os.O_DIRECTORY:
                raise fail(code, 'close', entry[0])

        def flock(fd, operation):
            fileno = fd if isinstance(fd, int) else fd.fileno()
            if fileno in self.fds:
                if self.b.flock_errno:
                    raise fail(self.b.flock_errno, 'flock')
                access = self.fds[fileno][1] & os.O_ACCMODE
                if (self.b.flock_rdonly_ebadf and operation & fcntl.LOCK_EX
                        and access == os.O_RDONLY):
                    raise fail(errno.EBADF, 'flock(LOCK_EX) on a read-only descriptor')
            return real_flock(fd, operation)

        def lockf(fd, cmd, *args):
            fileno = fd if isinstance(fd, int) else fd.fileno()
            if fileno in self.fds and self.b.lockf_errno:
                raise fail(self.b.lockf_errno, 'lockf')
            return real_lockf(fd, cmd, *args)

        def replace(src, dst, **kwargs):
            if self._inside(dst) and self.b.replace_errno and os.path.lexists(dst):
                raise fail(self.b.replace_errno, 'rename over an existing file', dst)
            if self._inside(dst) and self.b.read_only:
                raise fail(errno.EROFS, 'rename', dst)
            return real['replace'](src, dst, **kwargs)

        def rename(src, dst, **kwargs):
            if self._inside(src) and self.b.read_only:
                raise fail(errno.EROFS, 'rename', src)
            if self._inside(src) and str(os.path.realpath(src)) in self.lower:
                raise fail(errno.EXDEV, 'rename of a lower-layer directory', src)
            if self._inside(dst) and self.b.replace_errno and os.path.lexists(dst):
                raise fail(self.b.replace_errno, 'rename over an existing file', dst)
            return real['rename'](src, dst, **kwargs)

        def mkdir(path, *args, **kwargs):
            if self._inside(path) and self.b.read_only:
                raise fail(errno.EROFS, 'mkdir', path)
            return real['mkdir'](path, *args, **kwargs)

        for name, function in (('open', open_), ('fsync', fsync), ('close', close),
                               ('replace', replace), ('rename', rename), ('mkdir', mkdir)):
            monkeypatch.setattr(os, name, function)
        monkeypatch.setattr(fcntl, 'flock', flock)
        monkeypatch.setattr(fcntl, 'lockf', lockf)

    def _inside(self, path, dir_fd=None) -> bool:
        if dir_fd is not None or isinstance(path, int):
            return False
        text = os.path.realpath(os.fspath(path))
        return text == str(self.root) or text.startswith(str(self.root) + os.sep)
