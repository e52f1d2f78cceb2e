"""Which filesystem a path lives on, and what the state store can promise there; no rclpy.

The state store's durability rests on four POSIX behaviours: ``flock(2)`` serializes writers,
``fsync(2)`` of a file and of a directory reaches stable storage, ``rename(2)`` of a directory and
of a file over an existing one is atomic, and a read-only or full filesystem says so with an
errno. Filesystems a robot or a developer laptop mounts differ exactly there:

==============  =============================================================================
family          what differs (and the store's policy)
==============  =============================================================================
local           ext4, xfs, btrfs, f2fs, zfs...: everything holds; full guarantee.
memory          tmpfs, ramfs: everything holds, but the contents are gone after a reboot or
                power loss; diagnosed as a weaker guarantee.
nfs             NFSv3/v4: ``flock`` on a descriptor opened read-only fails with EBADF (the
                lock file is opened read-write); without a lock daemon (NFSv3 ``nolock`` or no
                ``lockd``) locks fail with ENOLCK (POSIX ``lockf`` is tried, then writers are
                serialized in this process only: weaker); write errors (EDQUOT, ENOSPC) may
                first show at ``fsync`` or ``close`` (every one is checked); a file still open
                when removed becomes ``.nfsXXXX`` (ignored inside version directories).
smb             CIFS/SMB: ``fsync`` of a directory fails with EINVAL (tolerated: the rename is
                made durable by the server, not by the client; weaker); some servers refuse a
                rename over an existing file (CURRENT is then replaced by unlink and rename:
                loading without CURRENT takes the newest valid version, which is the new one).
9p              WSL2 ``/mnt/c`` (9p) and WSL1 drvfs, virtiofs/9p shares of VMs: directory
                ``fsync`` fails with EINVAL (tolerated, weaker, as for smb).
overlay         container filesystems: renaming a directory of a lower layer fails with EXDEV
                (pruning an old version then removes it in place).
fuse            sshfs, rclone, gcsfuse...: ``flock`` may be missing (EOPNOTSUPP, ENOSYS,
                ENOLCK: ``lockf``, then in-process only) and directory ``fsync`` may be
                unsupported (tolerated); durability is the FUSE daemon's: weaker.
==============  =============================================================================

Everywhere: a read-only mount (EROFS) or a directory without write permission makes the learner
refuse to start (lessons could never be stored); so does a full disk or quota (ENOSPC, EDQUOT)
at start-up. The store never opens files with ``O_DIRECT`` (tmpfs and several FUSE mounts refuse
it). :func:`mount_of` reads ``/proc/self/mountinfo``; elsewhere the filesystem is 'unknown'.
"""

from dataclasses import dataclass
import os
from pathlib import Path

MOUNTINFO = Path('/proc/self/mountinfo')

_FAMILIES = {
    'local': ('ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'f2fs', 'zfs', 'jfs', 'reiserfs',
              'bcachefs', 'nilfs2', 'apfs', 'hfsplus', 'ntfs3', 'vfat', 'exfat'),
    'memory': ('tmpfs', 'ramfs', 'devtmpfs'),
    'nfs': ('nfs', 'nfs4'),
    'smb': ('cifs', 'smb3', 'smbfs'),
    '9p': ('9p', 'v9fs', 'drvfs', 'virtiofs'),
    'overlay': ('overlay', 'overlayfs', 'aufs'),
}

_NOTES = {
    'memory': 'contents are lost at reboot or power loss',
    'nfs': 'durability depends on the NFS server (sync export)',
    'smb': 'durability depends on the SMB server',
    '9p': 'durability depends on the host of the shared folder',
    'fuse': 'durability depends on the FUSE filesystem daemon',
}


@dataclass(frozen=True)
class MountInfo:
    """One mount of ``/proc/self/mountinfo``.

    Attributes:
        mount_point: where it is mounted.
        fs_type: the filesystem type as the kernel names it ('ext4', 'nfs4', 'fuse.sshfs'...).
        source: the mounted device or share ('server:/export', '//host/share', '/dev/sda1').
        options: mount options (per-mount and superblock), e.g. {'rw', 'noatime'}.

    """

    mount_point: Path
    fs_type: str
    source: str
    options: frozenset[str]

    @property
    def read_only(self) -> bool:
        """Whether the mount is read-only."""
        return 'ro' in self.options

    @property
    def family(self) -> str:
        """The filesystem family of the table in the module docstring ('unknown' if none)."""
        return filesystem_family(self.fs_type)

    def describe(self) -> str:
        """E.g. ``nfs4 (server:/export at /mnt/robot)``."""
        return f'{self.fs_type} ({self.source} at {self.mount_point})'


def filesystem_family(fs_type: str) -> str:
    """Return the family ('local', 'memory', 'nfs', 'smb', '9p', 'overlay', 'fuse', 'unknown')."""
    if fs_type == 'fuseblk' or fs_type == 'fuse' or fs_type.startswith('fuse.'):
        return 'fuse'
    for family, types in _FAMILIES.items():
        if fs_type in types:
            return family
    return 'unknown'


def family_note(family: str) -> str | None:
    """Return what the family itself weakens (durability held by someone else), or None."""
    return _NOTES.get(family)


def _unescape(field: str) -> str:
    r"""Undo mountinfo's octal escapes (space is ``\040``)."""
    out, i = [], 0
    while i < len(field):
        digits = field[i + 1:i + 4]
        if field[i] == '\\' and len(digits) == 3 and all(c in '01234567' for c in digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return ''.join(out)


def parse_mountinfo(text: str) -> list[MountInfo]:
    """Parse the text of ``/proc/<pid>/mountinfo`` (see proc(5)); malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(' ')
        if '-' not in fields:
            continue
        sep = fields.index('-')
        if sep < 6 or len(fields) < sep + 3:
            continue
        options = set(fields[5].split(','))
        if len(fields) > sep + 3:
            options |= set(fields[sep + 3].split(','))
        mounts.append(MountInfo(mount_point=Path(_unescape(fields[4])), fs_type=fields[sep + 1],
                                source=_unescape(fields[sep + 2]), options=frozenset(options)))
    return mounts


def mount_of(path: Path | str, mountinfo: str | None = None) -> MountInfo | None:
    """Return the mount that holds ``path`` (the innermost, the last mounted), or None.

    ``path`` need not exist: its nearest existing parent is looked up. ``mountinfo`` is the
    text of a mountinfo file (default: this process's); None where it cannot be read.
    """
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text(errors='replace')
        except OSError:
            return None
    target = Path(os.path.realpath(path))
    best = None
    for mount in parse_mountinfo(mountinfo):
        if target == mount.mount_point or mount.mount_point in target.parents:
            if best is None or len(mount.mount_point.parts) >= len(best.mount_point.parts):
                best = mount
    return best
