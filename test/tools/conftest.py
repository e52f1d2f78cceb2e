"""Fixtures for the CORe50 and rosbag tool tests: a small CORe50-like set, loopback-only DDS."""

from pathlib import Path
import shutil
import time

import pytest

from cl_core_ros.data.core50 import make_core50_like
from cl_core_ros.loopback import loopback_env

SESSIONS = (1, 3)
OBJECTS = (1, 2, 7)
FRAMES = 20


@pytest.fixture(scope='session')
def core50_spec() -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Return (sessions, objects, frames) of :func:`core50_tree`."""
    return SESSIONS, OBJECTS, FRAMES


@pytest.fixture(scope='session')
def core50_tree(tmp_path_factory) -> Path:
    """Return a read-only CORe50-like layout folder: sessions 1 and 3, objects 1, 2, 7."""
    root = tmp_path_factory.mktemp('core50')
    return make_core50_like(root, sessions=SESSIONS, objects=OBJECTS, frames=FRAMES, seed=7)


@pytest.fixture
def core50_copy(core50_tree, tmp_path) -> Path:
    """Return a private copy of the CORe50-like layout that a test may damage."""
    copy = tmp_path / 'copy' / core50_tree.name
    shutil.copytree(core50_tree, copy)
    return copy


@pytest.fixture
def ros_env(tmp_path, monkeypatch) -> dict[str, str]:
    """Set loopback-only DDS variables in this process; return them for subprocesses."""
    env = loopback_env(tmp_path / 'ros_log')
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def wait_for(condition, timeout: float, period: float = 0.02) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(period)
    return bool(condition())


@pytest.fixture
def waiter():
    """Return the bounded :func:`wait_for` helper."""
    return wait_for
