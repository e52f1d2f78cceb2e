import gzip

import numpy as np
import pytest

from cl_core_ros.data.fashion_mnist import find_fashion_mnist, load_fashion_mnist, read_idx
from cl_core_ros.data.photos import load_photo, OBJECT_NAMES, render_frames, session_style


def test_photo_frames_are_deterministic_and_sessions_differ():
    a = render_frames('coffee', 0, 3, size=64)
    assert a.shape == (3, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_frames('coffee', 0, 3, size=64))
    assert np.array_equal(a[2], render_frames('coffee', 0, 1, size=64, first_frame=2)[0])
    b = render_frames('coffee', 1, 3, size=64)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 20  # another session looks different
    assert np.abs(a[0].astype(int) - a[1].astype(int)).mean() < np.abs(
        a[0].astype(int) - b[0].astype(int)).mean()  # frames of a session are close
    assert session_style('coffee', 0) != session_style('coffee', 0, seed=1)


def test_every_object_is_bundled():
    for name in OBJECT_NAMES:
        photo = load_photo(name)
        assert photo.ndim == 3 and photo.shape[2] == 3 and max(photo.shape[:2]) <= 256
    with pytest.raises(ValueError, match='unknown photo'):
        load_photo('kidney')


def _write_idx(path, array, compress):
    header = bytes([0, 0, 0x08, array.ndim]) + b''.join(
        int(d).to_bytes(4, 'big') for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + '.gz', 'wb') as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize('compress', [False, True])
def test_fashion_mnist_reader_on_synthetic_files(tmp_path, compress):
    rng = np.random.default_rng(0)
    for prefix, n in (('train', 6), ('t10k', 4)):
        _write_idx(tmp_path / f'{prefix}-images-idx3-ubyte',
                   rng.integers(0, 256, (n, 28, 28)), compress)
        _write_idx(tmp_path / f'{prefix}-labels-idx1-ubyte', np.arange(n) % 10, compress)
    assert find_fashion_mnist((tmp_path,)) == tmp_path
    images, labels = load_fashion_mnist('test', tmp_path)
    assert images.shape == (4, 28, 28) and labels.tolist() == [0, 1, 2, 3]
    bad = tmp_path / 'bad'
    bad.write_bytes(b'\x01\x02\x03\x04')
    with pytest.raises(ValueError, match='not an idx'):
        read_idx(bad)


def test_missing_fashion_mnist_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_fashion_mnist('train', tmp_path)
