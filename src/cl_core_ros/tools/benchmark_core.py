"""Benchmark of the continual-learning core, side by side with baselines on the same features.

Usage::

    python -m cl_core_ros.tools.benchmark_core --out DIR [--source hard|photos|fashion-mnist]
        [--classes 8] [--lessons 2] [--frames 100] [--test-sessions 4] [--test-frames 25]
        [--consolidate-every 8] [--seed 0 | --seeds 0,1,2] [--threads 2]
        [--scaling 1,10,50,100]

Default stream: the hard scene stream of EVALUATION.md (:mod:`cl_core_ros.data.scenes`):
8 objects taught from one 100-frame session each, then a second lesson each; 4 test sessions of
every object on background photos never used in training; never-taught objects for the open set.
Every strategy sees the same frames and the same frozen backbone features:

- ``ar1_fast``: :meth:`Learner.learn` only (the product's fast update);
- ``ar1_fast_deep``: the same plus :meth:`Learner.consolidate` every few experiences;
- on the same pooled features: ``ncm`` (nearest class mean, cosine), ``slda`` (streaming LDA,
  shared covariance with shrinkage), ``joint`` (a linear head retrained on everything so far:
  offline upper bound of a linear read-out), ``naive`` (fine-tuning on the new lesson only),
  ``replay_unbalanced`` (the TF-Lite app's memory) and ``replay_balanced_no_cwr``.

Prints and writes (``--out``): ``summary.json`` and ``summary.csv`` (accuracy after the first
round and at the end, forgetting of all and of the first classes, update times, peak RSS),
``accuracy.csv`` + ``accuracy.png`` (learning curves), ``per_object.csv`` (top-1 per object at
the end) and ``per_object_first_round.csv`` (after one lesson of every object), ``open_set.csv`` +
``open_set.png`` (AUROC of the unknown score, never-taught and taught frames flagged unknown,
per frame and smoothed), ``timing.csv``, and with ``--scaling`` ``scaling.csv`` +
``scaling.png`` (fast update and inference time and RSS from 1 to 100 classes, measured in a
fresh process). With ``--seeds`` every object set runs in turn into ``DIR/seed_N/`` and
``seeds.json``, ``seeds.csv`` and ``paired.csv`` summarise them
(:mod:`cl_core_ros.tools.seed_summary`: mean, spread and worst set of every strategy, the sets
on which the product matched each read-out on its features, the product's paired difference
from each read-out over all objects of all sets with a bootstrap interval, the open set).
"""

import argparse
import contextlib
import csv
import json
import logging
import math
from pathlib import Path
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from cl_core_ros.core.ar1 import TrainSettings
from cl_core_ros.core.baselines import (
    DeepSLDA,
    JointTraining,
    NaiveFineTuning,
    NearestClassMean,
    ReplayHead,
)
from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.heap import fix_heap_thresholds
from cl_core_ros.core.latents import Latents
from cl_core_ros.core.learner import Learner
from cl_core_ros.core.metrics import AccuracyMatrix, auroc
from cl_core_ros.tools import seed_summary
from cl_core_ros.tools.bench_scaling import peak_rss_mb
from cl_core_ros.tools.bench_streams import BenchStream, fashion_stream, hard_stream, photo_stream

logger = logging.getLogger('benchmark_core')

PRODUCT = ('ar1_fast', 'ar1_fast_deep')


# ------------------------------------------------------------------------------ strategies
class LearnerStrategy:
    """Adapter running a Learner (the product) with the benchmark's interface."""

    def __init__(self, name: str, config: LearnerConfig, consolidate_every: int = 0):
        self.name = name
        self.learner = Learner(config)
        self.consolidate_every = consolidate_every
        self.times: list[float] = []
        self.deep_times: list[float] = []
        self._since = 0

    def learn(self, label: str, latents: Latents) -> None:
        """Fast update (and a deep one every ``consolidate_every`` experiences)."""
        self.times.append(self.learner.learn(label, latents).seconds)
        self._since += 1
        if self.consolidate_every and self._since >= self.consolidate_every:
            self.deep_times.append(self.learner.consolidate().seconds)
            self._since = 0

    def predict(self, latents: Latents) -> list[str]:
        """Return the top-1 label per frame ('' if none)."""
        return [(p.labels or [''])[0] for p in self.learner.predict_latents(latents)]

    def open_scores(self, sessions: list[Latents]) -> tuple[list, list]:
        """Return per-frame and smoothed ``(unknown score, flagged)`` over test sessions.

        The unknown score is ``floor - similarity`` of the top-1 class (higher = more unknown).
        Smoothing restarts at every session, as when the camera turns to a new scene.
        """
        per_frame, smoothed = [], []
        for latents in sessions:
            per_frame += [(p.floor - p.similarity, p.unknown)
                          for p in self.learner.predict_latents(latents)]
            self.learner.reset_smoothing()
            smoothed += [(p.floor - p.similarity, p.unknown)
                         for p in self.learner.predict_latents(latents, smooth=True)]
        return per_frame, smoothed


class HeadAdapter:
    """Adapter for the pooled-feature baselines (class names mapped to ids)."""

    def __init__(self, strategy, classes: list[str], name: str | None = None):
        self.strategy = strategy
        self.name = name or strategy.name
        self.ids = {c: k for k, c in enumerate(classes)}
        self.names = list(classes)
        self.times: list[float] = []
        self.deep_times: list[float] = []

    def learn(self, label: str, latents: Latents) -> None:
        """Learn one experience from its pooled features."""
        start = time.perf_counter()
        self.strategy.learn(latents.pool, torch.full((len(latents),), self.ids[label]))
        self.times.append(time.perf_counter() - start)

    def predict(self, latents: Latents) -> list[str]:
        """Return the top-1 label per frame."""
        return [self.names[k] if k >= 0 else '' for k in self.strategy.predict(latents.pool)]


def make_strategies(config: LearnerConfig, dim: int, classes: list[str], args) -> list:
    """Return the product's two variants and the baselines, in print order."""
    settings = TrainSettings(epochs=config.fast_epochs, new_per_batch=config.fast_new_per_batch,
                             replay_per_batch=config.fast_replay_per_batch, lr=args.baseline_lr,
                             head_lr=args.baseline_lr, momentum=config.momentum,
                             weight_decay=config.weight_decay)
    joint = TrainSettings(epochs=args.joint_epochs, new_per_batch=settings.new_per_batch,
                          replay_per_batch=settings.replay_per_batch, lr=args.baseline_lr,
                          head_lr=args.baseline_lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    strategies = [LearnerStrategy('ar1_fast', config)]
    if not args.skip_deep:
        strategies.append(LearnerStrategy('ar1_fast_deep', config, args.consolidate_every))
    strategies += [
        HeadAdapter(NearestClassMean(dim), classes),
        HeadAdapter(DeepSLDA(dim, shrinkage=args.slda_shrinkage), classes, 'slda'),
        HeadAdapter(JointTraining(dim, joint, seed=args.seed), classes),
        HeadAdapter(NaiveFineTuning(dim, settings, seed=args.seed), classes),
        HeadAdapter(ReplayHead(dim, settings, memory='unbalanced',
                               capacity=config.fast_buffer_size, per_experience=args.frames,
                               seed=args.seed), classes),
        HeadAdapter(ReplayHead(dim, settings, memory='class_balanced',
                               capacity=config.fast_buffer_size, seed=args.seed), classes,
                    'replay_balanced_no_cwr'),
    ]
    return strategies


# ------------------------------------------------------------------------------ the run
def build_stream(args) -> BenchStream:
    """Return the stream the arguments ask for."""
    if args.source == 'hard':
        return hard_stream(n_classes=args.classes, lessons=args.lessons, frames=args.frames,
                           test_sessions=args.test_sessions, test_frames=args.test_frames,
                           never_taught=args.never_taught, seed=args.seed)
    if args.source == 'photos':
        return photo_stream(n_classes=args.classes, n_experiences=args.classes * args.lessons,
                            frames=args.frames, test_frames=args.test_frames * args.test_sessions,
                            seed=args.seed)
    return fashion_stream(n_experiences=10 * args.lessons, frames=args.frames,
                          test_frames=args.test_frames * args.test_sessions, seed=args.seed)


def _encode_sessions(encoder: Learner, sessions: dict) -> dict[str, list[Latents]]:
    return {name: [encoder.encode_images(make()) for make in makes]
            for name, makes in sessions.items()}


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark and write the outputs; return the summary."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    fix_heap_thresholds()  # as the nodes do
    stream = build_stream(args)
    print(f'stream: {stream.description}', flush=True)
    overrides = {'seed': args.seed, 'deep_epochs': args.deep_epochs}
    if args.input_size:
        overrides['input_size'] = args.input_size
    if args.centre_sigma is not None:
        overrides['centre_sigma'] = args.centre_sigma
    overrides.update(args.set)
    config = LearnerConfig.from_dict({**LearnerConfig().to_dict(), **overrides})
    encoder = Learner(config)
    start = time.perf_counter()
    train_latents = [encoder.encode_images(make()) for _, _, make in stream.experiences]
    tests = _encode_sessions(encoder, stream.tests)
    never = _encode_sessions(encoder, stream.never_taught)
    similar = _encode_sessions(encoder, stream.similar_untaught)
    n_frames = sum(len(x) for x in train_latents) + sum(
        len(x) for group in (tests, never, similar) for v in group.values() for x in v)
    encode_s = time.perf_counter() - start
    print(f'encoded {n_frames} frames at {config.input_size} px in {encode_s:.1f} s '
          f'({1000 * encode_s / n_frames:.1f} ms/frame, batched)', flush=True)
    test_all = {c: Latents.cat(v) for c, v in tests.items()}
    first_round = min(len(stream.classes), len(stream.experiences))  # experiences to round one
    first_classes = stream.classes[:max(1, len(stream.classes) // 2)]

    strategies = make_strategies(config, encoder.feature_dim, stream.classes, args)
    curves: dict[str, list[float]] = {}
    per_object: dict[str, dict[str, float]] = {}
    per_object_first: dict[str, dict[str, float]] = {}
    summary, open_rows = [], []
    for strategy in strategies:
        matrix = AccuracyMatrix(stream.classes)
        seen: list[str] = []
        curve = []
        t0 = time.perf_counter()
        for (label, _, _), latents in zip(stream.experiences, train_latents):
            strategy.learn(label, latents)
            if label not in seen:
                seen.append(label)
            accs = {c: float(np.mean([p == c for p in strategy.predict(test_all[c])]))
                    for c in seen}
            matrix.record(accs)
            curve.append(float(np.mean(list(accs.values()))))
            if len(curve) == first_round:
                per_object_first[strategy.name] = dict(accs)
        curves[strategy.name] = curve
        per_object[strategy.name] = dict(accs)
        row = {
            'strategy': strategy.name,
            'accuracy_first_round': curve[first_round - 1],
            'final_accuracy': curve[-1], 'mean_accuracy': float(np.mean(curve)),
            'forgetting': matrix.forgetting(),
            'forgetting_first_classes': matrix.forgetting(first_classes),
            'backward_transfer': matrix.backward_transfer(),
            'median_update_s': statistics.median(strategy.times),
            'deep_updates': len(strategy.deep_times),
            'median_deep_s': statistics.median(strategy.deep_times)
            if strategy.deep_times else math.nan,
            'peak_rss_mb': peak_rss_mb(), 'total_s': time.perf_counter() - t0,
        }
        summary.append(row)
        print(f"{row['strategy']:>24}: first round {row['accuracy_first_round']:.3f}  final "
              f"{row['final_accuracy']:.3f}  forgetting {row['forgetting']:.3f}  update "
              f"{row['median_update_s'] * 1000:.1f} ms  ({row['total_s']:.0f} s)", flush=True)
        if isinstance(strategy, LearnerStrategy):
            open_rows += open_set_rows(strategy, tests, never, similar)
        elif strategy.name == 'ncm':
            open_rows += ncm_open_set_rows(strategy.strategy, tests, never, similar)
    timing = measure_timing(config, train_latents, stream, strategies)
    result = {'stream': stream.description, 'source': stream.name, 'seed': args.seed,
              'input_size': config.input_size, 'centre_sigma': config.centre_sigma,
              'classes': stream.classes, 'first_classes': first_classes,
              'summary': summary, 'per_object': per_object,
              'per_object_first_round': per_object_first, 'open_set': open_rows,
              'timing': timing, 'curves': curves,
              'experiences': [[label, s] for label, s, _ in stream.experiences]}
    if args.scaling:
        result['scaling'] = run_scaling(args, out)
    _write(out, stream, result)
    return result


def _open_row(strategy: str, group: str, taught: list, untaught: list, kind: str) -> dict:
    """AUROC of the unknown score and the shares flagged, for one kind of frames."""
    return {'strategy': strategy, 'untaught': group, 'frames': kind,
            'auroc': auroc([s for s, _ in untaught], [s for s, _ in taught]),
            'untaught_flagged': float(np.mean([f for _, f in untaught])) if untaught else math.nan,
            'taught_flagged': float(np.mean([f for _, f in taught])),
            'n_taught': len(taught), 'n_untaught': len(untaught)}


def open_set_rows(strategy: LearnerStrategy, tests, never, similar) -> list[dict]:
    """Open-set rows of a product strategy: never-taught (and similar) vs taught frames."""
    taught_f, taught_s = strategy.open_scores([x for v in tests.values() for x in v])
    rows = []
    for group, sessions in (('never_taught', never), ('similar_kind', similar)):
        if not sessions:
            continue
        frame, smooth = strategy.open_scores([x for v in sessions.values() for x in v])
        rows.append(_open_row(strategy.name, group, taught_f, frame, 'per_frame'))
        rows.append(_open_row(strategy.name, group, taught_s, smooth, 'smoothed'))
    return rows


def ncm_open_set_rows(ncm: NearestClassMean, tests, never, similar) -> list[dict]:
    """AUROC of NCM's best cosine similarity (no verdict: flagged shares are NaN)."""
    def scores(groups) -> list:
        return [(-float(s), math.nan) for v in groups.values() for x in v
                for s in ncm.similarities(x.pool).max(dim=1).values]
    taught = scores(tests)
    rows = []
    for group, sessions in (('never_taught', never), ('similar_kind', similar)):
        if sessions:
            row = _open_row('ncm', group, taught, scores(sessions), 'per_frame')
            row['untaught_flagged'] = row['taught_flagged'] = math.nan
            rows.append(row)
    return rows


def measure_timing(config: LearnerConfig, train_latents, stream: BenchStream,
                   strategies) -> dict:
    """Fast update of 100 frames after the stream, single-frame inference, deep update."""
    learner = next(s.learner for s in strategies if isinstance(s, LearnerStrategy))
    latents = Latents.cat(train_latents).index(torch.arange(min(100, sum(map(len,
                                                                             train_latents)))))
    labels = [label for label, _, _ in stream.experiences]
    reports = [learner.learn(labels[k % len(labels)], latents) for k in range(11)]
    times = [r.seconds for r in reports]
    side = learner.config.input_size
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frame = learner.preprocess(image)[None]
    for _ in range(5):
        learner.predict(frame, smooth=True)
    infer = []
    for _ in range(30):
        t0 = time.perf_counter()
        learner.predict(frame, smooth=True)
        infer.append(time.perf_counter() - t0)
    deep = [s.deep_times for s in strategies if isinstance(s, LearnerStrategy) and s.deep_times]
    result = {'fast_100_median_s': statistics.median(times), 'fast_100_max_s': max(times),
              'fast_classes': len(learner.labels), 'fast_buffer': learner.status()['fast_buffer'],
              'inference_median_s': statistics.median(infer), 'input_size': side,
              'deep_median_s': statistics.median(deep[0]) if deep else math.nan,
              'peak_rss_mb': peak_rss_mb()}
    print(f"fast update of 100 frames ({result['fast_classes']} classes): median "
          f"{result['fast_100_median_s'] * 1000:.1f} ms; single-frame inference at {side} px: "
          f"{result['inference_median_s'] * 1000:.1f} ms; deep update median "
          f"{result['deep_median_s']:.1f} s", flush=True)
    return result


# ------------------------------------------------------------------------------ scaling
def run_scaling(args, out: Path) -> list[dict]:
    """Measure 1 -> N classes in a fresh process (its RSS holds only one learner)."""
    command = [sys.executable, '-m', 'cl_core_ros.tools.bench_scaling', '--out',
               str(out / 'scaling.json'), '--classes', args.scaling, '--seed', str(args.seed),
               '--threads', str(args.threads), '--frames', str(args.frames)]
    if args.input_size:
        command += ['--input-size', str(args.input_size)]
    subprocess.run(command, check=True)
    rows = json.loads((out / 'scaling.json').read_text())
    for row in rows:
        print(f"{row['classes']:>4} classes: fast update {row['fast_median_s'] * 1000:6.1f} ms, "
              f"inference {row['inference_median_s'] * 1000:5.1f} ms, RSS "
              f"{row['rss_mb']:.0f} MB (peak {row['peak_rss_mb']:.0f} MB)"
              + (f", consolidation {row['deep_s']:.1f} s" if row.get('deep_s') else ''))
    return rows


# ------------------------------------------------------------------------------ outputs
def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f'{v:.4f}' if isinstance(v, float) else v)
                             for k, v in row.items()})


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _write(out: Path, stream: BenchStream, result: dict) -> None:
    names = list(result['curves'])
    with open(out / 'accuracy.csv', 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['experience', 'class', 'session', *names])
        for k, (label, session, _) in enumerate(stream.experiences):
            writer.writerow([k + 1, label, session,
                             *(f"{result['curves'][n][k]:.4f}" for n in names)])
    _write_csv(out / 'summary.csv', result['summary'])
    for key, name in (('per_object', 'per_object.csv'),
                      ('per_object_first_round', 'per_object_first_round.csv')):
        _write_csv(out / name, [{'object': c, **{n: result[key].get(n, {}).get(c)
                                                 for n in names}}
                                for c in stream.classes])
    if result['open_set']:
        _write_csv(out / 'open_set.csv', result['open_set'])
    _write_csv(out / 'timing.csv', [result['timing']])
    if result.get('scaling'):
        _write_csv(out / 'scaling.csv', result['scaling'])
    (out / 'summary.json').write_text(json.dumps(_clean(result), indent=1))
    _plots(out, stream, result)
    _print_tables(result)
    print(f'outputs in {out}')


def _plots(out: Path, stream: BenchStream, result: dict) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    curves = result['curves']
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, curve in curves.items():
        style = '-' if name in PRODUCT else ('--' if name == 'joint' else ':')
        ax.plot(range(1, len(curve) + 1), curve, style, label=name,
                linewidth=2 if name in PRODUCT else 1)
    ax.axvline(len(stream.classes) + 0.5, color='grey', linewidth=0.5)
    ax.set_xlabel('experience (one lesson of one object)')
    ax.set_ylabel('top-1 on seen objects (unseen backgrounds)')
    ax.set_title(stream.description, fontsize=7)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / 'accuracy.png', dpi=120)
    plt.close(fig)
    smoothed = [r for r in result['open_set']
                if r['frames'] == 'smoothed' and r['untaught'] == 'never_taught']
    if smoothed:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        x = np.arange(len(smoothed))
        ax.bar(x - 0.2, [r['untaught_flagged'] for r in smoothed], 0.4,
               label='never-taught flagged unknown')
        ax.bar(x + 0.2, [r['taught_flagged'] for r in smoothed], 0.4,
               label='taught flagged unknown')
        ax.set_xticks(x, [f"{r['strategy']}\nAUROC {r['auroc']:.3f}" for r in smoothed])
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
        ax.set_title('open set, smoothed over frames', fontsize=9)
        fig.tight_layout()
        fig.savefig(out / 'open_set.png', dpi=120)
        plt.close(fig)
    if result.get('scaling'):
        rows = result['scaling']
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r['classes'] for r in rows], [1000 * r['fast_median_s'] for r in rows], 'o-',
                label='fast update (ms)')
        ax.plot([r['classes'] for r in rows], [1000 * r['inference_median_s'] for r in rows],
                's-', label='inference per frame (ms)')
        ax.set_xlabel('known classes')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / 'scaling.png', dpi=120)
        plt.close(fig)


def _print_tables(result: dict) -> None:
    print()
    print(f"{'strategy':>24} {'1 lesson':>8} {'final':>6} {'forget':>7} {'forget1st':>9} "
          f"{'upd ms':>7} {'deep s':>7} {'peak MB':>8}")
    for row in result['summary']:
        print(f"{row['strategy']:>24} {row['accuracy_first_round']:8.3f} "
              f"{row['final_accuracy']:6.3f} {row['forgetting']:7.3f} "
              f"{row['forgetting_first_classes']:9.3f} {1000 * row['median_update_s']:7.1f} "
              f"{row['median_deep_s']:7.1f} {row['peak_rss_mb']:8.0f}")
    names = list(result['per_object'])
    print()
    print(f"{'object':>18} " + ' '.join(f'{n[:10]:>10}' for n in names))
    for c in result['classes']:
        print(f'{c[:18]:>18} ' + ' '.join(f"{result['per_object'][n].get(c, math.nan):10.3f}"
                                          for n in names))
    if result['open_set']:
        print()
        print(f"{'strategy':>14} {'untaught':>13} {'frames':>10} {'AUROC':>6} "
              f"{'untaught flagged':>16} {'taught flagged':>14}")
        for r in result['open_set']:
            print(f"{r['strategy']:>14} {r['untaught']:>13} {r['frames']:>10} {r['auroc']:6.3f} "
                  f"{r['untaught_flagged']:16.3f} {r['taught_flagged']:14.3f}")


def _config_override(text: str) -> tuple[str, object]:
    """Parse ``FIELD=VALUE`` into a LearnerConfig field and a value of the field's type."""
    name, sep, value = text.partition('=')
    defaults = LearnerConfig().to_dict()
    if not sep or name not in defaults:
        raise argparse.ArgumentTypeError(f'{text!r}: expected FIELD=VALUE with FIELD one of '
                                         f'{sorted(defaults)}')
    default = defaults[name]
    if isinstance(default, bool):
        return name, value.lower() in ('1', 'true', 'yes')
    if value.lower() == 'none':
        return name, None
    if default is None:  # optional fields: a number where it reads as one, else a name
        for kind in (int, float):
            with contextlib.suppress(ValueError):
                return name, kind(value)
        return name, value
    try:
        return name, type(default)(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f'{text!r}: {err}') from err


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument('--source', choices=('hard', 'photos', 'fashion-mnist'), default='hard',
                        help='stream (default: the hard scene stream of EVALUATION.md)')
    parser.add_argument('--classes', type=int, default=8, help='taught objects')
    parser.add_argument('--lessons', type=int, default=2, help='lessons (sessions) per object')
    parser.add_argument('--frames', type=int, default=100, help='frames per lesson')
    parser.add_argument('--test-sessions', type=int, default=4,
                        help='test sessions per object (unseen backgrounds)')
    parser.add_argument('--test-frames', type=int, default=25, help='frames per test session')
    parser.add_argument('--never-taught', type=int, default=4, help='never-taught objects')
    parser.add_argument('--consolidate-every', type=int, default=8,
                        help='experiences between deep consolidations of ar1_fast_deep')
    parser.add_argument('--deep-epochs', type=int, default=4)
    parser.add_argument('--skip-deep', action='store_true', help='leave out ar1_fast_deep')
    parser.add_argument('--input-size', type=int, default=0,
                        help='model input side (0: the learner default)')
    parser.add_argument('--centre-sigma', type=float, default=None,
                        help='centre-weighted pooling width (default: the learner default)')
    parser.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                        type=_config_override,
                        help='override a LearnerConfig field, e.g. --set deep_lr_first=1e-4')
    parser.add_argument('--baseline-lr', type=float, default=1e-3,
                        help='SGD learning rate of the linear-head baselines')
    parser.add_argument('--joint-epochs', type=int, default=20, help='epochs of the joint head')
    parser.add_argument('--slda-shrinkage', type=float, default=1e-2)
    parser.add_argument('--scaling', default='',
                        help='class counts for the scaling measurement, e.g. 1,10,50,100')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--seeds', default='',
                        help='several object sets, e.g. 0,1,2: one run each into DIR/seed_N, '
                             'then their summary (mean, sd, worst set)')
    parser.add_argument('--threads', type=int, default=2, help='torch threads (0: default)')
    args = parser.parse_args(argv)
    args.set = dict(args.set)
    if min(args.classes, args.lessons, args.frames, args.test_sessions, args.test_frames) < 1 \
            or args.classes < 2:
        parser.error('--classes must be >= 2; --lessons, --frames, --test-sessions, '
                     '--test-frames >= 1')
    if args.consolidate_every < 1:
        parser.error('--consolidate-every must be >= 1')
    try:
        args.seeds = [int(v) for v in args.seeds.split(',')] if args.seeds else []
    except ValueError:
        parser.error(f'--seeds: comma-separated integers, got {args.seeds!r}')
    if len(set(args.seeds)) != len(args.seeds):
        parser.error('--seeds: each seed once')
    if args.seeds and args.scaling:
        parser.error('--scaling measures one process: give it with --seed, not --seeds')
    return args


def run_seeds(args: argparse.Namespace) -> dict:
    """Run every seed of ``args.seeds`` into ``out/seed_N``; write and return their summary."""
    out = Path(args.out)
    results = []
    for seed in args.seeds:
        print(f'=== seed {seed} ===', flush=True)
        results.append(run(argparse.Namespace(**{**vars(args), 'seed': seed,
                                                 'out': str(out / f'seed_{seed}')})))
    summary = seed_summary.summarise(results)
    (out / 'seeds.json').write_text(json.dumps(_clean(summary), indent=1))
    _write_csv(out / 'seeds.csv', seed_summary.rows(summary))
    if summary['paired']:
        _write_csv(out / 'paired.csv', seed_summary.paired_rows(summary))
    print(seed_summary.format_table(summary))
    print(f'summary of {len(results)} object sets in {out}')
    return summary


def main(argv=None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    try:
        run_seeds(args) if args.seeds else run(args)
    except FileNotFoundError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
