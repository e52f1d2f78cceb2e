"""Fixtures of the state store tests: small learner-like states and an exact comparison."""

import math
import os
from pathlib import Path
import subprocess
import sys

import pytest
import torch

SRC_DIR = Path(__file__).resolve().parents[2] / 'src'
HERE = Path(__file__).resolve().parent


def _make_state(seed: int = 0, *, classes: int = 3, rows: int = 64) -> dict:
    """A small state shaped like the learner's: head, replay buffers, labels, plain values."""
    generator = torch.Generator().manual_seed(seed)
    return {
        'head': {
            'weight': torch.randn(classes, 32, generator=generator),
            'counts': torch.arange(classes, dtype=torch.float32) + seed,
        },
        'replay.pool/activations': torch.randn(rows, 32, generator=generator),
        'replay': {
            'codes': torch.randint(0, 256, (rows, 4, 2, 2), generator=generator,
                                   dtype=torch.uint8),
            'labels': torch.randint(0, classes, (rows,), generator=generator),
            'empty': torch.empty(0, 4, dtype=torch.float16),
        },
        'labels': [f'object {i}' for i in range(classes)],
        'meta': {'seed': seed, 'lr': 0.001, 'nan': math.nan, 'frozen': True, 'note': None},
    }


def _assert_same_state(actual, expected, path: str = 'state') -> None:
    """Assert exact equality: types, container kinds, keys and order, dtypes, shapes, values."""
    assert type(actual) is type(expected), f'{path}: {type(actual)} != {type(expected)}'
    if isinstance(expected, torch.Tensor):
        assert actual.dtype == expected.dtype, f'{path}: dtype {actual.dtype} != {expected.dtype}'
        assert actual.shape == expected.shape, f'{path}: shape {actual.shape} != {expected.shape}'
        assert torch.equal(actual, expected) or (
            actual.is_floating_point() and torch.equal(actual.isnan(), expected.isnan())
            and torch.equal(actual.nan_to_num(), expected.nan_to_num())), f'{path}: values'
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), f'{path}: keys {list(actual)} != {list(expected)}'
        for key in expected:
            _assert_same_state(actual[key], expected[key], f'{path}[{key!r}]')
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f'{path}: length'
        for index, (a, e) in enumerate(zip(actual, expected)):
            _assert_same_state(a, e, f'{path}[{index}]')
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual), f'{path}: {actual} is not nan'
    else:
        assert actual == expected, f'{path}: {actual!r} != {expected!r}'


@pytest.fixture
def make_state():
    """Return a factory of small learner-like states (deterministic per seed)."""
    return _make_state


@pytest.fixture
def assert_same_state():
    """Return an exact comparison of two states."""
    return _assert_same_state


@pytest.fixture
def run_python():
    """Run a Python snippet or script in a fresh interpreter with ``src`` on the path."""

    def _run(args: list[str], *, timeout: float = 60, check: bool = False,
             **kwargs) -> subprocess.CompletedProcess:
        env = {**os.environ, **kwargs.pop('env', {}), 'PYTHONPATH': str(SRC_DIR)}
        result = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                                timeout=timeout, env=env, **kwargs)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    return _run
