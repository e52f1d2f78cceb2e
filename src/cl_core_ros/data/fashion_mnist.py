"""Reader for Fashion-MNIST idx files, e.g. from Debian's ``dataset-fashion-mnist`` package.

The package is optional: :func:`find_fashion_mnist` returns None when no copy is found, and
nothing here downloads anything. Files may be plain or gzip-compressed idx
(``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-...``).
"""

import gzip
from pathlib import Path

import numpy as np

CLASS_NAMES = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker',
               'bag', 'ankle boot')
SEARCH_DIRS = ('/usr/share/dataset-fashion-mnist', '/usr/share/fashion-mnist',
               '/usr/share/datasets/fashion-mnist', '/usr/share/dataset-fashion-mnist/data')
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: '>i2', 0x0C: '>i4', 0x0D: '>f4', 0x0E: '>f8'}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == '.gz' else open
    with opener(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f'{path}: not an idx file')
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    offset = 4 + 4 * ndim
    count = int(np.prod(dims)) if dims else 1
    if len(raw) - offset < count * dtype.itemsize:
        raise ValueError(f'{path}: truncated idx data')
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(dims)


def _find_file(directory: Path, stem: str) -> Path | None:
    for name in (stem, f'{stem}.gz', stem.replace('-idx', '.idx'),
                 f'{stem.replace("-idx", ".idx")}.gz'):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def find_fashion_mnist(extra_dirs: tuple[str | Path, ...] = ()) -> Path | None:
    """Return the first directory holding the four Fashion-MNIST files, or None."""
    for d in (*extra_dirs, *SEARCH_DIRS):
        directory = Path(d)
        if directory.is_dir() and all(_find_file(directory, s) for s in _stems('train')) \
                and all(_find_file(directory, s) for s in _stems('test')):
            return directory
    return None


def _stems(split: str) -> tuple[str, str]:
    prefix = 'train' if split == 'train' else 't10k'
    return f'{prefix}-images-idx3-ubyte', f'{prefix}-labels-idx1-ubyte'


def load_fashion_mnist(split: str = 'train', directory: str | Path | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images N x 28 x 28 uint8, labels N int64)`` of ``split`` ('train' or 'test').

    Raises FileNotFoundError when no copy is installed.
    """
    if split not in ('train', 'test'):
        raise ValueError("split must be 'train' or 'test'")
    root = Path(directory) if directory is not None else find_fashion_mnist()
    if root is None:
        raise FileNotFoundError('Fashion-MNIST not found (apt install dataset-fashion-mnist)')
    image_stem, label_stem = _stems(split)
    image_file, label_file = _find_file(root, image_stem), _find_file(root, label_stem)
    if image_file is None or label_file is None:
        raise FileNotFoundError(f'Fashion-MNIST {split} files missing in {root}')
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f'{root}: unexpected Fashion-MNIST shapes {images.shape}, '
                         f'{labels.shape}')
    return images.astype(np.uint8), labels.astype(np.int64)
