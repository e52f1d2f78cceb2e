"""Benchmark of the continual-learning core on a real-image class-incremental stream.

Usage::

    python -m cl_core_ros.tools.benchmark_core --out DIR [--dataset photos|fashion-mnist]
        [--experiences 30] [--classes 12] [--frames 100] [--test-frames 40]
        [--consolidate-every 5] [--seed 0] [--threads 2]

Stream (NIC-like): one experience = one object filmed in one session (``--frames`` frames).
The first round shows every class once in a seeded random order (class-incremental), later rounds
bring new sessions of known classes. Test frames come from held-out sessions. Every strategy
sees the same frames and the same frozen backbone features:

- ``ar1_fast``: :meth:`Learner.learn` only (CWR* head, class-balanced pool replay);
- ``ar1_fast_deep``: the same plus :meth:`Learner.consolidate` every few experiences;
- ``naive``, ``replay_unbalanced`` (TF-Lite app), ``replay_balanced_no_cwr``, ``deep_slda``;
- ``joint``: the head retrained on all data so far (upper bound).

Writes ``accuracy.csv`` (accuracy on the test frames of the classes seen so far, after every
experience), ``summary.csv``, ``accuracy.png`` and prints a table. Also times a deep update of
100 new + 1500 replayed latents and the fast update of 100 frames.
"""

import argparse
import csv
import logging
import math
from pathlib import Path
import resource
import statistics
import sys
import time

import numpy as np
import torch

from cl_core_ros.core.ar1 import TrainSettings
from cl_core_ros.core.baselines import DeepSLDA, JointTraining, NaiveFineTuning, ReplayHead
from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.latents import Latents
from cl_core_ros.core.learner import Learner
from cl_core_ros.core.metrics import AccuracyMatrix

logger = logging.getLogger('benchmark_core')

TEST_SESSIONS = (100, 101)  # never used for training


def peak_rss_mb() -> float:
    """Return the peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def photo_stream(n_classes: int, n_experiences: int, frames: int, test_frames: int, seed: int):
    """Yield the stream of the packaged photos: (classes, experiences, test images)."""
    from cl_core_ros.data.photos import OBJECT_NAMES, render_frames

    if n_classes > len(OBJECT_NAMES):
        raise ValueError(f'--classes: at most {len(OBJECT_NAMES)} photo objects')
    classes = list(OBJECT_NAMES[:n_classes])
    rng = np.random.default_rng(seed)
    order = []
    session = 0
    while len(order) < n_experiences:
        order += [(classes[k], session) for k in rng.permutation(n_classes)]
        session += 1
    order = order[:n_experiences]
    experiences = [(name, s, lambda n=name, s=s: render_frames(n, s, frames, seed=seed))
                   for name, s in order]
    per_session = max(1, test_frames // len(TEST_SESSIONS))
    tests = {name: np.concatenate([render_frames(name, s, per_session, seed=seed)
                                   for s in TEST_SESSIONS]) for name in classes}
    return classes, experiences, tests


def fashion_stream(n_experiences: int, frames: int, test_frames: int, seed: int):
    """Fashion-MNIST stream: each experience is ``frames`` new images of one class."""
    from cl_core_ros.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist

    images, labels = load_fashion_mnist('train')
    test_images, test_labels = load_fashion_mnist('test')
    classes = list(CLASS_NAMES)
    rng = np.random.default_rng(seed)
    pools = {k: rng.permutation(np.flatnonzero(labels == k)) for k in range(len(classes))}
    used = dict.fromkeys(range(len(classes)), 0)
    order = []
    session = 0
    while len(order) < n_experiences:
        order += [(int(k), session) for k in rng.permutation(len(classes))]
        session += 1
    experiences = []
    for k, s in order[:n_experiences]:
        idx = pools[k][used[k]:used[k] + frames]
        used[k] += frames
        experiences.append((classes[k], s, lambda idx=idx: images[idx]))
    tests = {classes[k]: test_images[np.flatnonzero(test_labels == k)[:test_frames]]
             for k in range(len(classes))}
    return classes, experiences, tests


class LearnerStrategy:
    """Adapter running a Learner (AR1*) with the benchmark's interface."""

    def __init__(self, name: str, config: LearnerConfig, consolidate_every: int = 0):
        self.name = name
        self.learner = Learner(config)
        self.consolidate_every = consolidate_every
        self.times: list[float] = []
        self.deep_times: list[tuple[int, int, float]] = []
        self._since = 0

    def learn(self, label: str, latents: Latents) -> None:
        """Fast update (and a deep one every ``consolidate_every`` experiences)."""
        self.times.append(self.learner.learn(label, latents).seconds)
        self._since += 1
        if self.consolidate_every and self._since >= self.consolidate_every:
            report = self.learner.consolidate()
            self.deep_times.append((report.frames_used, report.replayed, report.seconds))
            self._since = 0

    def predict(self, latents: Latents) -> list[str]:
        """Return the top-1 label per frame ('' if none)."""
        return [(p.labels or [''])[0] for p in self.learner.predict_latents(latents)]


class HeadAdapter:
    """Adapter for the pooled-feature baselines (class names mapped to ids)."""

    def __init__(self, strategy, classes: list[str]):
        self.strategy = strategy
        self.name = strategy.name
        self.ids = {c: k for k, c in enumerate(classes)}
        self.names = list(classes)
        self.times: list[float] = []
        self.deep_times: list[tuple[int, int, float]] = []

    def learn(self, label: str, latents: Latents) -> None:
        """Learn one experience from its pooled features."""
        start = time.perf_counter()
        self.strategy.learn(latents.pool, torch.full((len(latents),), self.ids[label]))
        self.times.append(time.perf_counter() - start)

    def predict(self, latents: Latents) -> list[str]:
        """Return the top-1 label per frame."""
        return [self.names[k] if k >= 0 else '' for k in self.strategy.predict(latents.pool)]


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark and write the outputs; return the summary rows."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dataset == 'photos':
        classes, experiences, tests = photo_stream(args.classes, args.experiences, args.frames,
                                                   args.test_frames, args.seed)
    else:
        classes, experiences, tests = fashion_stream(args.experiences, args.frames,
                                                     args.test_frames, args.seed)
    config = LearnerConfig(seed=args.seed, deep_epochs=args.deep_epochs)
    encoder = Learner(config)
    start = time.perf_counter()
    train_latents = [encoder.encode_images(make()) for _, _, make in experiences]
    test_latents = {c: encoder.encode_images(img) for c, img in tests.items()}
    n_frames = sum(len(x) for x in train_latents) + sum(len(x) for x in test_latents.values())
    encode_s = time.perf_counter() - start
    print(f'encoded {n_frames} frames in {encode_s:.1f} s '
          f'({1000 * encode_s / n_frames:.1f} ms/frame)', flush=True)

    settings = TrainSettings(epochs=config.fast_epochs, new_per_batch=config.fast_new_per_batch,
                             replay_per_batch=config.fast_replay_per_batch, lr=config.fast_lr,
                             head_lr=config.fast_lr, momentum=config.momentum,
                             weight_decay=config.weight_decay)
    dim = encoder.feature_dim
    strategies = [
        LearnerStrategy('ar1_fast', config),
        LearnerStrategy('ar1_fast_deep', config, args.consolidate_every),
        HeadAdapter(NaiveFineTuning(dim, settings, seed=args.seed), classes),
        HeadAdapter(ReplayHead(dim, settings, memory='unbalanced',
                               capacity=config.fast_buffer_size, per_experience=args.frames,
                               seed=args.seed), classes),
        HeadAdapter(ReplayHead(dim, settings, memory='class_balanced',
                               capacity=config.fast_buffer_size, seed=args.seed), classes),
        HeadAdapter(DeepSLDA(dim), classes),
        HeadAdapter(JointTraining(dim, settings, seed=args.seed), classes),
    ]
    strategies[4].name = 'replay_balanced_no_cwr'
    if args.skip_deep:
        strategies.pop(1)
    curves: dict[str, list[float]] = {}
    summary = []
    for strategy in strategies:
        matrix = AccuracyMatrix(classes)
        seen: list[str] = []
        curve = []
        t0 = time.perf_counter()
        for (label, _, _), latents in zip(experiences, train_latents):
            strategy.learn(label, latents)
            if label not in seen:
                seen.append(label)
            accs = {}
            for c in seen:
                predicted = strategy.predict(test_latents[c])
                accs[c] = float(np.mean([p == c for p in predicted]))
            matrix.record(accs)
            curve.append(float(np.mean([accs[c] for c in seen])))
        curves[strategy.name] = curve
        row = {
            'strategy': strategy.name, 'final_accuracy': curve[-1],
            'mean_accuracy': float(np.mean(curve)), 'forgetting': matrix.forgetting(),
            'backward_transfer': matrix.backward_transfer(),
            'median_update_s': statistics.median(strategy.times),
            'deep_updates': len(strategy.deep_times),
            'median_deep_s': statistics.median(t for *_, t in strategy.deep_times)
            if strategy.deep_times else math.nan,
            'peak_rss_mb': peak_rss_mb(), 'total_s': time.perf_counter() - t0,
        }
        summary.append(row)
        print(f"{row['strategy']:>24}: final {row['final_accuracy']:.3f}  "
              f"forgetting {row['forgetting']:.3f}  update {row['median_update_s']:.3f} s  "
              f"({row['total_s']:.0f} s)", flush=True)
        if isinstance(strategy, LearnerStrategy) and strategy.consolidate_every:
            row.update(measure_deep_100_1500(strategy.learner, train_latents, experiences))
    timing = measure_fast_100(config, train_latents, experiences)
    _write(out, experiences, curves, summary, timing)
    return {'summary': summary, 'timing': timing}


def measure_deep_100_1500(learner: Learner, train_latents, experiences) -> dict:
    """Time one consolidation of 100 new latents with a full deep memory (1500)."""
    learner.consolidate()
    if learner.status()['deep_buffer'] < learner.config.deep_buffer_size:
        print('deep memory not full: the 100 + 1500 measurement uses', learner.status())
    label = experiences[0][0]
    learner.learn(label, train_latents[0].index(torch.arange(min(100, len(train_latents[0])))))
    report = learner.consolidate()
    print(f'deep update: {report.frames_used} new + {report.replayed} replayed in '
          f'{report.seconds:.1f} s wall, {report.cpu_seconds:.1f} s CPU '
          f'({report.steps} SGD steps, {torch.get_num_threads()} threads)', flush=True)
    return {'deep_100_new': report.frames_used, 'deep_replayed': report.replayed,
            'deep_seconds': report.seconds, 'deep_cpu_seconds': report.cpu_seconds}


def measure_fast_100(config: LearnerConfig, train_latents, experiences) -> dict:
    """Median fast-update time for 100 frames after the stream has filled the memory."""
    learner = Learner(config)
    for (label, _, _), latents in zip(experiences, train_latents):
        learner.learn(label, latents)
    latents = Latents.cat(train_latents).index(torch.arange(100))
    reports = [learner.learn(experiences[k % len(experiences)][0], latents) for k in range(11)]
    times = [r.seconds for r in reports]
    result = {'fast_100_median_s': statistics.median(times), 'fast_100_max_s': max(times),
              'fast_100_median_cpu_s': statistics.median(r.cpu_seconds for r in reports),
              'fast_buffer': learner.status()['fast_buffer']}
    print(f"fast update of 100 frames: median {result['fast_100_median_s'] * 1000:.1f} ms "
          f"(max {result['fast_100_max_s'] * 1000:.1f} ms, {result['fast_buffer']} replayed)")
    return result


def _write(out: Path, experiences, curves, summary, timing) -> None:
    names = list(curves)
    with open(out / 'accuracy.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['experience', 'class', 'session', *names])
        for k, (label, session, _) in enumerate(experiences):
            writer.writerow([k + 1, label, session, *(f'{curves[n][k]:.4f}' for n in names)])
    with open(out / 'summary.csv', 'w', newline='') as f:
        keys = sorted({k for row in summary for k in row}, key=lambda k: (k != 'strategy', k))
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in summary:
            writer.writerow(row)
    with open(out / 'timing.csv', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(timing))
        writer.writeheader()
        writer.writerow(timing)
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name in names:
        style = '--' if name == 'joint' else '-'
        ax.plot(range(1, len(curves[name]) + 1), curves[name], style, label=name)
    ax.set_xlabel('experience')
    ax.set_ylabel('accuracy on seen classes (held-out sessions)')
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / 'accuracy.png', dpi=120)
    plt.close(fig)
    print()
    print(f"{'strategy':>24} {'final':>6} {'mean':>6} {'forget':>7} {'BWT':>7} "
          f"{'upd med s':>9} {'deep med s':>10} {'peak MB':>8}")
    for row in summary:
        print(f"{row['strategy']:>24} {row['final_accuracy']:6.3f} {row['mean_accuracy']:6.3f} "
              f"{row['forgetting']:7.3f} {row['backward_transfer']:7.3f} "
              f"{row['median_update_s']:9.4f} {row['median_deep_s']:10.1f} "
              f"{row['peak_rss_mb']:8.0f}")
    print(f'outputs in {out}')


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--dataset', choices=('photos', 'fashion-mnist'), default='photos')
    parser.add_argument('--experiences', type=int, default=30)
    parser.add_argument('--classes', type=int, default=12, help='photo objects (<= 22)')
    parser.add_argument('--frames', type=int, default=100, help='frames per experience')
    parser.add_argument('--test-frames', type=int, default=40, help='test frames per class')
    parser.add_argument('--consolidate-every', type=int, default=5)
    parser.add_argument('--deep-epochs', type=int, default=4)
    parser.add_argument('--skip-deep', action='store_true', help='leave out ar1_fast_deep')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: default)')
    args = parser.parse_args(argv)
    if args.experiences < 1 or args.frames < 1 or args.test_frames < 1 or args.classes < 2:
        parser.error('--experiences, --frames, --test-frames must be >= 1, --classes >= 2')
    if args.consolidate_every < 1:
        parser.error('--consolidate-every must be >= 1')
    return args


def main(argv=None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.WARNING)
    try:
        run(parse_args(argv))
    except FileNotFoundError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
