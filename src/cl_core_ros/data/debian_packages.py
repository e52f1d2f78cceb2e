"""Debian packages unpacked into a per-user cache: ``apt-get download`` then ``dpkg -x``.

Image data that Debian ships (photographic stamps, wallpapers) is fetched on first use and kept
under :func:`cache_root` (never in the source tree). Nothing is installed system-wide and no
maintainer script runs: ``dpkg -x`` only unpacks the files.

Where the package is already installed (its files under ``/usr/share``), that copy is used and
nothing is fetched.

Errors: :class:`PackageUnavailableError` (a FileNotFoundError) says which package could not be
had and why (no ``apt-get``/``dpkg`` on this machine, the package not in the apt lists, a failed
download), with the command that would fix it.
"""

import contextlib
import fcntl
import logging
import os
from pathlib import Path
import shutil
import subprocess
import tempfile

logger = logging.getLogger(__name__)

CACHE_ENV = 'CL_CORE_ROS_CACHE'
_COMPLETE = '.complete'


class PackageUnavailableError(FileNotFoundError):
    """A Debian package's files could not be found or fetched."""


def cache_root() -> Path:
    """Return the cache directory: ``$CL_CORE_ROS_CACHE``, else ``$XDG_CACHE_HOME/cl_core_ros``.

    ``$XDG_CACHE_HOME`` defaults to ``~/.cache``.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base).expanduser() / 'cl_core_ros'


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive advisory lock on ``path`` (concurrent fetches wait for each other)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'a+') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900,
                          check=False, stdin=subprocess.DEVNULL)


def _download(package: str, directory: Path) -> Path:
    """``apt-get download`` the package's .deb into ``directory``; return its path."""
    for tool in ('apt-get', 'dpkg'):
        if shutil.which(tool) is None:
            raise PackageUnavailableError(
                f'{package}: `{tool}` is not on this machine; on a Debian/Ubuntu machine the '
                f'package is fetched automatically, elsewhere unpack its .deb into '
                f'{cache_root() / "debian" / package} (`dpkg -x PACKAGE.deb DIR`)')
    result = _run(['apt-get', 'download', package], directory)
    if result.returncode != 0 and os.geteuid() == 0:
        # A fresh machine may have no package lists yet (or stale ones): refresh once, retry.
        logger.info('apt-get download %s failed (%s); refreshing the package lists', package,
                    result.stderr.strip().splitlines()[-1:] or '')
        _run(['apt-get', 'update', '-qq'], directory)
        result = _run(['apt-get', 'download', package], directory)
    debs = sorted(directory.glob(f'{package}_*.deb'))
    if result.returncode != 0 or not debs:
        hint = '' if os.geteuid() == 0 else ' (run `sudo apt-get update` first)'
        raise PackageUnavailableError(
            f'{package}: apt-get download failed{hint}: {result.stderr.strip()[-400:]}')
    return debs[0]


def package_root(package: str, probe: str) -> Path:
    """Return a root directory holding ``package``'s files (``probe`` relative to it exists).

    ``probe`` is a path inside the package, e.g. ``usr/share/tuxpaint/stamps``. The system copy
    (``/``) is used when the package is installed; otherwise the package is fetched once into
    ``cache_root()/debian/<package>`` and that directory is returned.

    Raises PackageUnavailableError when neither works.
    """
    if (Path('/') / probe).exists():
        return Path('/')
    target = cache_root() / 'debian' / package
    if (target / _COMPLETE).exists() and (target / probe).exists():
        return target
    with _locked(cache_root() / 'debian' / f'.{package}.lock'):
        if (target / _COMPLETE).exists() and (target / probe).exists():
            return target  # fetched by another process while this one waited
        logger.info('fetching Debian package %s into %s', package, target)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f'.{package}.') as tmp:
            work = Path(tmp)
            deb = _download(package, work)
            unpacked = work / 'root'
            result = _run(['dpkg', '-x', str(deb), str(unpacked)], work)
            if result.returncode != 0 or not (unpacked / probe).exists():
                raise PackageUnavailableError(f'{package}: dpkg -x gave no {probe}: '
                                         f'{result.stderr.strip()[-400:]}')
            (unpacked / _COMPLETE).write_text(deb.name + '\n')
            if target.exists():
                shutil.rmtree(target)
            unpacked.rename(target)
    return target
