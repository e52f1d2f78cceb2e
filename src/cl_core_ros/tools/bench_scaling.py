"""How the learner's costs grow with the number of known classes (run by ``benchmark_core``).

Usage::

    python -m cl_core_ros.tools.bench_scaling --out scaling.json [--classes 1,10,50,100]
        [--consolidate] [--input-size N] [--frames 100] [--threads 2]

A fresh learner is taught class after class (each from a real 100-frame hard-stream lesson,
reused across classes: the costs depend on the sizes, not on the pixels). At every count in
``--classes`` it times the fast update of a lesson (``--frames``) of a known class (median of 5),
single-frame inference from a 640x480 image (median of 20) and reads the resident set size; with
``--consolidate`` it then runs one deep consolidation (1 epoch) over everything pending and
reports its time. RSS is sampled every 20 ms from the first lesson on (``peak_rss_mb``: the
highest seen while teaching, predicting and consolidating); the one-off batch encoding of the
lessons before that is left out. Runs in its own process so that the figures hold one learner,
as in the node.
"""

import argparse
import json
import os
from pathlib import Path
import resource
import statistics
import sys
import threading
import time

import numpy as np
import torch

from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.heap import fix_heap_thresholds
from cl_core_ros.core.learner import Learner


def rss_mb() -> float:
    """Return the current resident set size of this process in MiB."""
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf('SC_PAGE_SIZE') / 2 ** 20


def peak_rss_mb() -> float:
    """Return the peak resident set size of this process in MiB (since it started)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """The highest RSS seen, sampled every ``period`` s while the block runs.

    The lifetime peak would also count the one-off batch encoding of the lessons, which the
    node never does.
    """

    def __init__(self, period: float = 0.02):
        self.period, self.peak = period, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb())
            self._stop.wait(self.period)

    def __enter__(self) -> 'RssSampler':
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def lessons(learner: Learner, n: int, seed: int, frames: int = 100) -> list:
    """Return ``n`` encoded lessons (``frames`` frames) of distinct hard-stream objects."""
    from cl_core_ros.data.scenes import make_stream

    stream = make_stream(n, 0, seed=seed, n_similar=0)
    return [learner.encode_images(stream.frames(o, 'train', 0, frames)) for o in stream.taught]


def measure(counts: list[int], *, consolidate: bool, input_size: int, seed: int,
            frames: int = 100) -> list[dict]:
    """Teach up to ``max(counts)`` classes and measure at each count."""
    overrides = {'seed': seed, 'deep_epochs': 1}
    if input_size:
        overrides['input_size'] = input_size
    learner = Learner(LearnerConfig(**overrides))
    pool = lessons(learner, 4, seed, frames)
    image = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frame = learner.preprocess(image)[None]
    rows = []
    with RssSampler() as sampler:
        for k in range(1, max(counts) + 1):
            learner.learn(f'class{k:03d}', pool[k % len(pool)])
            if k not in counts:
                continue
            fast = [learner.learn(f'class{1 + j % k:03d}', pool[j % len(pool)]).seconds
                    for j in range(5)]
            infer = []
            for _ in range(25):
                t0 = time.perf_counter()
                learner.predict(frame, smooth=True)
                infer.append(time.perf_counter() - t0)
            rows.append({'classes': k, 'fast_median_s': statistics.median(fast),
                         'fast_max_s': max(fast),
                         'inference_median_s': statistics.median(infer[5:]),
                         'rss_mb': rss_mb(), 'peak_rss_mb': sampler.peak,
                         'fast_buffer': learner.status()['fast_buffer']})
            print(f"{k} classes: fast {rows[-1]['fast_median_s'] * 1000:.1f} ms", flush=True)
        if consolidate:
            report = learner.consolidate()
    if consolidate:
        rows[-1].update({'deep_s': report.seconds, 'deep_new': report.frames_used,
                         'deep_replayed': report.replayed, 'peak_rss_mb': sampler.peak})
    rows[-1]['lifetime_peak_rss_mb'] = peak_rss_mb()
    return rows


def main(argv=None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, type=Path, help='JSON file written')
    parser.add_argument('--classes', default='1,10,50,100', help='class counts measured')
    parser.add_argument('--consolidate', action=argparse.BooleanOptionalAction, default=True,
                        help='run one consolidation at the largest count (default: yes)')
    parser.add_argument('--input-size', type=int, default=0)
    parser.add_argument('--frames', type=int, default=100, help='frames per lesson')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args(argv)
    try:
        counts = sorted({int(v) for v in args.classes.split(',') if v.strip()})
    except ValueError:
        parser.error('--classes: comma-separated integers')
    if not counts or counts[0] < 1:
        parser.error('--classes: positive integers')
    if args.threads:
        torch.set_num_threads(args.threads)
    fix_heap_thresholds()  # as the nodes do
    rows = measure(counts, consolidate=args.consolidate, input_size=args.input_size,
                   seed=args.seed, frames=args.frames)
    args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
