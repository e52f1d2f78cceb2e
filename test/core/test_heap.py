"""The heap settings of the executables, checked in fresh processes (glibc, as on ROS 2 hosts)."""

import subprocess
import sys

import pytest

from cl_core_ros.core.heap import fix_heap_thresholds

# Frees eight 20 MB tensors, each followed by a small one that stays, and prints how much the
# resident set grew (MiB), then again after release_free_heap().
_SCRIPT = """
import sys, torch
from cl_core_ros.core.heap import fix_heap_thresholds, release_free_heap
def rss():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096 / 2 ** 20
if sys.argv[1] == 'fixed':
    assert fix_heap_thresholds()
kept, base = [], rss()
for _ in range(8):
    big = torch.ones(5_000_000)
    kept.append(torch.ones(1000))
    del big
grown = rss() - base
release_free_heap()
print(grown, rss() - base)
"""


def _growth(mode: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, '-c', _SCRIPT, mode], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    return float(out[0]), float(out[1])


def test_fixed_threshold_returns_freed_large_blocks_and_trim_returns_the_rest():
    default_grown, default_trimmed = _growth('default')
    fixed_grown, _ = _growth('fixed')
    # glibc's dynamic threshold keeps freed 20 MB blocks on the heap, resident: how many depends
    # on where the small tensors land (one block, 19-20 MiB, up to all but the first, 135 MiB),
    # never none.
    assert default_grown > 15
    assert fixed_grown < 8
    # malloc_trim hands all of them back.
    assert default_trimmed < 8


def test_threshold_must_be_positive():
    with pytest.raises(ValueError, match='must be > 0'):
        fix_heap_thresholds(0)


# Predicts 20 frames with a learner that was never taught (after 5 frames of warm-up) and prints
# the minor page faults per frame.
_PREDICT = """
import resource, sys, numpy as np, torch
from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.heap import fix_heap_thresholds
from cl_core_ros.core.learner import Learner
torch.set_num_threads(1)
if sys.argv[1] == 'fixed':
    assert fix_heap_thresholds()
learner = Learner(LearnerConfig())
frame = learner.preprocess(np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8))
for _ in range(5):
    learner.predict(frame[None], smooth=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    learner.predict(frame[None], smooth=True)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.slow
def test_an_untaught_learner_predicts_without_faulting_its_heap_in_again():
    def faults(mode: str) -> float:
        return float(subprocess.run([sys.executable, '-c', _PREDICT, mode], capture_output=True,
                                    text=True, timeout=300, check=True).stdout.split()[-1])

    default, fixed = faults('default'), faults('fixed')
    # About 3,900 per frame with glibc's defaults (the heap's top is trimmed after each frame).
    assert fixed < 500
    assert default > 4 * fixed
