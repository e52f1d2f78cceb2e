"""Environment for ROS 2 processes whose DDS traffic must stay on this machine.

Tests and the demo start every process with :func:`loopback_env`: discovery limited to
localhost, a Fast DDS profile that binds UDP to 127.0.0.1 (plus shared memory), a domain id of
their own and a log directory of their own. ``ROS_LOCALHOST_ONLY`` alone is not enough: it has
been seen sending multicast on other interfaces.
"""

import collections
import fcntl
import os
from pathlib import Path
import random
import sys
import tempfile

PROFILE_NAME = 'fastdds_loopback.xml'
# Fast DDS defaults (no enlarged shared-memory segment), still bound to 127.0.0.1.
DEFAULTS_PROFILE_NAME = 'fastdds_loopback_defaults.xml'


def profile_path(name: str = PROFILE_NAME) -> Path:
    """Return a Fast DDS profile of config/, from the source tree or the installed share dir."""
    here = Path(__file__).resolve()
    candidates = [here.parents[2] / 'config' / name]
    prefix = os.environ.get('VIRTUAL_ENV') or sys.prefix
    candidates.append(Path(prefix) / 'share' / 'cl_core_ros' / 'config' / name)
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f'{name} not found in: ' + ', '.join(map(str, candidates)))


DOMAIN_IDS = range(1, 102)  # the ids that are safe on every platform
_HELD_DOMAINS: collections.deque = collections.deque()
_HELD_PER_PROCESS = 4


def _domain_lock_dir() -> Path:
    path = Path(os.environ.get('CL_CORE_ROS_DOMAIN_LOCKS',
                               Path(tempfile.gettempdir()) / 'cl_core_ros_domains'))
    path.mkdir(parents=True, exist_ok=True)
    return path


def pick_domain_id() -> int:
    """Return a random ROS domain id (1..101) that no other process on this machine holds.

    Test runs, demos and benchmarks that run at the same time on one machine (parallel CI jobs,
    one per ROS distribution) must not share a domain: their nodes have the same names. Each id
    handed out is held with an ``flock`` on a file in ``$CL_CORE_ROS_DOMAIN_LOCKS`` (default
    ``$TMPDIR/cl_core_ros_domains``) until this process has picked four newer ids or exits; the
    kernel drops the lock of a process that died. Falls back to a plain random id when every id
    is held or the lock directory cannot be written.
    """
    ids = list(DOMAIN_IDS)
    random.SystemRandom().shuffle(ids)
    try:
        lock_dir = _domain_lock_dir()
    except OSError:
        return ids[0]
    for domain_id in ids:
        try:
            fd = os.open(lock_dir / f'{domain_id}.lock', os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _HELD_DOMAINS.append(fd)
        while len(_HELD_DOMAINS) > _HELD_PER_PROCESS:
            os.close(_HELD_DOMAINS.popleft())
        return domain_id
    return ids[0]


def loopback_env(log_dir: Path, domain_id: int | None = None,
                 base: dict[str, str] | None = None,
                 profile: str = PROFILE_NAME) -> dict[str, str]:
    """Return a copy of ``base`` (default ``os.environ``) set up for loopback-only DDS.

    ``profile``: the Fast DDS profile in config/ (:data:`DEFAULTS_PROFILE_NAME` for Fast DDS
    defaults on loopback).
    """
    env = dict(os.environ if base is None else base)
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    env.update({
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'ROS_STATIC_PEERS': '',
        'ROS_DOMAIN_ID': str(pick_domain_id() if domain_id is None else domain_id),
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'FASTDDS_DEFAULT_PROFILES_FILE': str(profile_path(profile)),
        'RMW_FASTRTPS_USE_QOS_FROM_XML': '0',
        'ROS_LOG_DIR': str(log_dir),
        'PYTHONUNBUFFERED': '1',
    })
    # Pip-only installs: the package index lives in this Python's prefix.
    if not env.get('AMENT_PREFIX_PATH'):
        env['AMENT_PREFIX_PATH'] = sys.prefix
    return env


def apply_loopback_env(log_dir: Path, domain_id: int | None = None) -> dict[str, str]:
    """Set the loopback-only variables in this process (before ``rclpy.init``)."""
    env = loopback_env(log_dir, domain_id)
    os.environ.update(env)
    return env
