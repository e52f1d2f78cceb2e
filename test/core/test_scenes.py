"""The hard stream on its real data (Debian stamps and wallpapers), and the package cache.

The scene tests read the stamps and wallpapers from the cache (fetched once on first use). The
cache tests fetch one tiny Debian package (``sl``, about 13 kB) into a temporary cache.
"""

import os
from pathlib import Path
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from cl_core_ros.data import debian_packages
from cl_core_ros.data.debian_packages import cache_root, package_root, PackageUnavailableError
from cl_core_ros.data.scenes import (
    background_catalogue,
    FRAME_SIZE,
    is_photographic,
    load_object,
    make_stream,
    object_catalogue,
    render_scene,
    scene_session,
    short_name,
)

TINY_PACKAGE = 'sl'             # a 13 kB Debian package with one program
TINY_PROBE = 'usr/games/sl'
MISSING_PACKAGE = 'cl-core-ros-no-such-package'


@pytest.fixture(scope='module')
def stream():
    return make_stream(n_taught=6, n_never_taught=3, seed=0)


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ---------------------------------------------------------------------------------- catalogue
def test_catalogues_hold_photographic_objects_and_photo_backgrounds():
    objects = object_catalogue()
    assert len(objects) >= 40
    assert list(objects) == sorted(objects)
    assert not [n for n in objects if n.endswith('_mirror') or 'cartoon' in n.split('/')]
    backgrounds = background_catalogue()
    assert len(backgrounds) >= 8
    for name in list(objects)[:: max(1, len(objects) // 8)]:
        rgba = load_object(name)
        assert rgba.dtype == np.float32 and rgba.ndim == 3 and rgba.shape[2] == 4
        assert max(rgba.shape[:2]) <= 512 and not rgba.flags.writeable
        assert 0.0 <= rgba[:, :, 3].min() and rgba[:, :, 3].max() <= 1.0
        # trimmed to its alpha: every border row and column touches the object
        visible = rgba[:, :, 3] > 8 / 255
        assert visible[0].any() and visible[-1].any()
        assert visible[:, 0].any() and visible[:, -1].any()
    assert short_name('animals/mammals/zebra') == 'zebra' and short_name('zebra') == 'zebra'


def _flat_drawing() -> np.ndarray:
    """A clip-art-like stamp: a few flat-filled shapes with dark outlines, opaque inside."""
    img = np.zeros((240, 240, 4), np.uint8)
    cv2.circle(img, (120, 120), 100, (230, 180, 40, 255), -1)
    cv2.circle(img, (120, 120), 100, (20, 20, 20, 255), 4)
    cv2.rectangle(img, (80, 90), (160, 150), (40, 90, 200, 255), -1)
    cv2.ellipse(img, (120, 180), (40, 15), 0, 0, 180, (200, 30, 30, 255), -1)
    return img


def _photo_like(side: int = 240) -> np.ndarray:
    """A photograph-like stamp: smooth shading plus sensor noise, an opaque disc."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    rgb = np.stack([90 + 120 * x, 60 + 100 * y, 140 - 60 * x * y], axis=-1)
    rgb += rng.normal(0, 12, rgb.shape)
    alpha = (((x - 0.5) ** 2 + (y - 0.5) ** 2) < 0.2).astype(np.float32) * 255
    return np.clip(np.dstack([rgb, alpha]), 0, 255).astype(np.uint8)


def test_is_photographic_tells_drawings_from_photos():
    drawing = _flat_drawing()
    assert (drawing[:, :, 3] > 200).sum() > 4000  # large enough: rejected for its colours
    assert not is_photographic(drawing)
    photo = _photo_like()
    assert is_photographic(photo)
    assert not is_photographic(_photo_like(side=50))       # too few opaque pixels
    assert not is_photographic(photo[:, :, :3])            # no alpha channel
    see_through = photo.copy()
    see_through[:, :, 3] = 100                             # nothing opaque
    assert not is_photographic(see_through)


# ---------------------------------------------------------------------------------- frames
def test_frames_are_camera_sized_uint8_and_deterministic(stream):
    obj = stream.taught[0]
    a = stream.frames(obj, 'train', 0, 4)
    assert a.shape == (4, 480, 640, 3) and a.dtype == np.uint8
    assert FRAME_SIZE == (640, 480)
    assert np.array_equal(a, stream.frames(obj, 'train', 0, 4))
    assert np.array_equal(a, make_stream(n_taught=6, n_never_taught=3, seed=0).frames(
        obj, 'train', 0, 4))
    assert a.std() > 20                                     # a picture, not a flat fill
    assert 0 < _diff(a[0], a[1]) < _diff(a[0], stream.frames(obj, 'train', 1, 1)[0])
    small = stream.frames(obj, 'test', 2, 3, frame_size=(320, 200))
    assert small.shape == (3, 200, 320, 3) and small.dtype == np.uint8
    assert stream.frames(obj, 'train', 0, 0).shape == (0, 480, 640, 3)


def test_another_seed_gives_other_objects_and_other_frames(stream):
    other = make_stream(n_taught=6, n_never_taught=3, seed=1)
    assert other.taught != stream.taught
    same_objects = make_stream(n_taught=6, n_never_taught=3, seed=1,
                               objects=stream.taught + stream.never_taught)
    assert same_objects.taught == stream.taught
    obj = stream.taught[0]
    a = stream.frames(obj, 'train', 0, 2)
    b = same_objects.frames(obj, 'train', 0, 2)
    assert _diff(a, b) > 10
    assert scene_session(obj, 'Grey', 'train0', seed=0) != scene_session(obj, 'Grey', 'train0',
                                                                          seed=1)
    assert scene_session(obj, 'Grey', 'train0') == scene_session(obj, 'Grey', 'train0')


def test_first_frame_continues_a_session(stream):
    obj = stream.never_taught[0]
    whole = stream.frames(obj, 'test', 1, 10)
    assert np.array_equal(whole[5:], stream.frames(obj, 'test', 1, 5, first_frame=5))
    style = stream.session(obj, 'test', 1)
    assert np.array_equal(whole[7:8], render_scene(style, obj, 1, seed=stream.seed,
                                                   first_frame=7))


# ---------------------------------------------------------------------------------- stream
def test_train_and_test_sessions_use_disjoint_background_pools(stream):
    train, test = set(stream.train_backgrounds), set(stream.test_backgrounds)
    assert train and test and not train & test
    assert train | test == set(background_catalogue())
    assert len(test) == (len(train) + len(test) + 1) // 2
    for obj in stream.taught + stream.never_taught:
        for split, pool in (('train', train), ('test', test)):
            used = [stream.session(obj, split, i).background for i in range(2 * len(pool) + 1)]
            assert set(used) <= pool
            assert set(used[:len(pool)]) == pool  # the pool is used up before any repeats
            assert all(a != b for a, b in zip(used, used[1:])), (obj, split, used)
    custom = make_stream(n_taught=2, n_never_taught=1, n_test_backgrounds=3)
    assert len(custom.test_backgrounds) == 3
    assert not set(custom.test_backgrounds) & set(custom.train_backgrounds)


@pytest.mark.parametrize('seed', [0, 1, 7])
def test_taught_and_never_taught_objects_are_disjoint(seed):
    s = make_stream(n_taught=8, n_never_taught=4, seed=seed)
    assert len(s.taught) == 8 and len(s.never_taught) == 4
    assert len(set(s.taught + s.never_taught)) == 12
    assert set(s.taught + s.never_taught) <= set(object_catalogue())
    assert s.seed == seed


def test_bad_requests_are_refused(stream):
    obj = stream.taught[0]
    with pytest.raises(ValueError, match='split'):
        stream.session(obj, 'validation', 0)
    with pytest.raises(ValueError, match='split'):
        stream.frames(obj, 'val', 0, 1)
    with pytest.raises(ValueError, match='index'):
        stream.session(obj, 'train', -1)
    with pytest.raises(ValueError, match='needed'):
        make_stream(n_taught=len(object_catalogue()), n_never_taught=1)
    with pytest.raises(ValueError, match='needed'):
        make_stream(n_taught=2, n_never_taught=1, objects=stream.taught[:2])
    with pytest.raises(ValueError):
        make_stream(n_taught=0)
    with pytest.raises(ValueError, match='n_test_backgrounds'):
        make_stream(n_test_backgrounds=len(background_catalogue()))
    with pytest.raises(ValueError):
        stream.frames(obj, 'train', 0, -1)
    with pytest.raises(ValueError):
        stream.frames(obj, 'train', 0, 1, frame_size=(640, 16))
    with pytest.raises(KeyError, match='no/such/object'):
        load_object('no/such/object')
    with pytest.raises(KeyError, match='no/such/object'):
        stream.frames('no/such/object', 'train', 0, 1)


# ---------------------------------------------------------------------------------- cache
def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(debian_packages.CACHE_ENV, str(tmp_path / 'mine'))
    assert cache_root() == tmp_path / 'mine'
    monkeypatch.delenv(debian_packages.CACHE_ENV)
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert cache_root() == tmp_path / 'xdg' / 'cl_core_ros'


def test_an_installed_package_is_used_in_place(tmp_path, monkeypatch):
    monkeypatch.setenv(debian_packages.CACHE_ENV, str(tmp_path / 'cache'))
    # Any name: what is already on this machine is used without a fetch.
    assert package_root(MISSING_PACKAGE, 'usr/bin') == Path('/')
    assert not (tmp_path / 'cache').exists()


def _needs_apt(package: str | None = None) -> None:
    if shutil.which('apt-get') is None or shutil.which('dpkg') is None:
        pytest.skip('fetching Debian packages needs apt-get and dpkg')
    if package is None:
        return
    status = subprocess.run(['dpkg-query', '-W', '-f=${Status}', package],
                            capture_output=True, text=True, timeout=30)
    if 'installed' in status.stdout.split() or (Path('/') / TINY_PROBE).exists():
        pytest.skip(f'{package} is installed here: nothing would be fetched')
    known = subprocess.run(['apt-cache', 'show', '--no-all-versions', package],
                           capture_output=True, text=True, timeout=30)
    if known.returncode != 0:
        pytest.skip(f'{package} is not in the apt lists of this machine')


def test_a_package_is_fetched_once_then_reused(tmp_path, monkeypatch):
    _needs_apt(TINY_PACKAGE)
    cache = tmp_path / 'cache'
    monkeypatch.setenv(debian_packages.CACHE_ENV, str(cache))
    root = package_root(TINY_PACKAGE, TINY_PROBE)
    assert root == cache / 'debian' / TINY_PACKAGE
    program = root / TINY_PROBE
    assert program.is_file() and program.stat().st_size > 1000
    marker = root / '.complete'
    deb_name = marker.read_text().strip()
    assert deb_name.startswith(f'{TINY_PACKAGE}_') and deb_name.endswith('.deb')
    # Only the unpacked tree and the lock are left: no temporary folder, no .deb.
    assert sorted(p.name for p in (cache / 'debian').iterdir()) == [
        f'.{TINY_PACKAGE}.lock', TINY_PACKAGE]
    assert not list(root.rglob('*.deb'))
    stamp = (marker.stat().st_mtime_ns, root.stat().st_ino)

    # Second use: no apt-get on PATH, so any download attempt would fail.
    monkeypatch.setenv('PATH', str(tmp_path / 'no-tools'))
    assert package_root(TINY_PACKAGE, TINY_PROBE) == root
    assert (marker.stat().st_mtime_ns, root.stat().st_ino) == stamp
    assert marker.read_text().strip() == deb_name


def test_a_package_that_does_not_exist_is_reported_by_name(tmp_path, monkeypatch):
    _needs_apt()
    cache = tmp_path / 'cache'
    monkeypatch.setenv(debian_packages.CACHE_ENV, str(cache))
    with pytest.raises(PackageUnavailableError, match=MISSING_PACKAGE) as caught:
        package_root(MISSING_PACKAGE, 'usr/share/doc/nothing')
    assert isinstance(caught.value, FileNotFoundError)
    assert 'apt-get download' in str(caught.value)
    assert not (cache / 'debian' / MISSING_PACKAGE).exists()
    assert not [p for p in (cache / 'debian').iterdir() if not p.name.endswith('.lock')]


def test_missing_tools_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv(debian_packages.CACHE_ENV, str(tmp_path / 'cache'))
    monkeypatch.setenv('PATH', str(tmp_path / 'no-tools'))
    with pytest.raises(PackageUnavailableError, match='apt-get') as caught:
        package_root(MISSING_PACKAGE, 'usr/share/doc/nothing')
    assert MISSING_PACKAGE in str(caught.value)
    assert os.fspath(tmp_path / 'cache' / 'debian' / MISSING_PACKAGE) in str(caught.value)
