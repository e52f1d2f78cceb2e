"""Fixtures for the protocol tests: a small CORe50-like set and a synthetic full CORe50 index."""

from pathlib import Path

import pytest

from cl_core_ros.data.core50 import Core50Frame, Core50Scan, make_core50_like

# Objects 1 and 2 share category 0 (plug adapters); 6 and 11 are categories 1 and 2.
SESSIONS = (1, 2, 3, 4)   # s3 is the test session
OBJECTS = (1, 2, 6, 11)
FRAMES = 12


@pytest.fixture(scope='session')
def core50_small(tmp_path_factory) -> Path:
    """Return a CORe50-like layout folder: 3 training sessions + s3, 4 objects, 12 frames."""
    root = tmp_path_factory.mktemp('core50_small')
    return make_core50_like(root, sessions=SESSIONS, objects=OBJECTS, frames=FRAMES, seed=3)


def synthetic_scan(sessions=range(1, 12), objects=range(1, 51), frames: int = 3) -> Core50Scan:
    """Return a scan of a full-size CORe50 index without files (names only)."""
    root = Path('/nonexistent/core50_128x128')
    items = [Core50Frame(s, o, f, root / f's{s}' / f'o{o}' / f'C_{s:02d}_{o:02d}_{f:03d}.png')
             for s in sessions for o in objects for f in range(frames)]
    return Core50Scan(root, 128, sorted(items), [])


@pytest.fixture(scope='session')
def full_scan() -> Core50Scan:
    """Return the index of a complete CORe50 (11 sessions x 50 objects, 3 frames each)."""
    return synthetic_scan()


@pytest.fixture(scope='session')
def make_scan():
    """Return :func:`synthetic_scan` (sessions, objects, frames) for custom indexes."""
    return synthetic_scan
