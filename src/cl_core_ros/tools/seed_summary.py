"""Summary of ``benchmark_core`` over several object sets (``--seeds``): mean, spread, wins.

One hard-stream run measures 8 objects with 4 test sessions each: a session of 25 frames is
3 points of an object's accuracy and 0.4 of the mean, so two strategies that differ by a point
on one object set may swap places on the next. Over several sets (seeds), this module reports
for every strategy the mean, the sample standard deviation and the worst set of its top-1
after the first round and at the end, how many sets the product (``ar1_fast``) scored at least
as well as each read-out on the same features, the product's paired difference from each
read-out object by object (:func:`paired_difference`), and the open-set figures of the product
(smoothed, never-taught objects).

Input: the dicts ``benchmark_core.run`` returns (one per seed); nothing here runs a model.
"""

import math
import statistics

import numpy as np

PRODUCT = 'ar1_fast'
SAME_FEATURES = ('ncm', 'slda', 'joint')
ACCURACIES = (('accuracy_first_round', 'first round'), ('final_accuracy', 'final'))
OPEN_SET = ('auroc', 'untaught_flagged', 'taught_flagged')
PER_OBJECT = {'accuracy_first_round': 'per_object_first_round', 'final_accuracy': 'per_object'}
BOOTSTRAP_RESAMPLES = 10_000


def _stats(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), extremes and the values themselves."""
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return {'mean': math.nan, 'sd': math.nan, 'min': math.nan, 'max': math.nan,
                'values': values}
    return {'mean': statistics.fmean(clean),
            'sd': statistics.stdev(clean) if len(clean) > 1 else 0.0,
            'min': min(clean), 'max': max(clean), 'values': values}


def paired_difference(differences: list[float], *, resamples: int = BOOTSTRAP_RESAMPLES,
                      level: float = 0.95, seed: int = 0) -> dict:
    """Mean of paired differences with a percentile bootstrap interval; counts of each sign.

    ``differences`` (N >= 1): one value per object, the product's top-1 minus a read-out's on
    the same test frames (fractions). The object is the resampled unit: its test sessions share
    its class mean, so they are not independent of each other, while different objects were
    taught from different lessons. The interval is the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of the means of ``resamples`` resamples with replacement
    (percentile bootstrap, Efron & Tibshirani 1993, ch. 13); seeded, so a summary is
    reproducible. Returns ``mean``, ``low``, ``high``, ``better``, ``worse``, ``equal``
    (objects; equal within 1e-9) and ``objects``. ValueError when empty.
    """
    d = np.asarray([v for v in differences if v is not None and math.isfinite(v)], float)
    if d.size == 0:
        raise ValueError('no paired differences')
    means = d[np.random.default_rng(seed).integers(0, d.size, (resamples, d.size))].mean(1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {'mean': float(d.mean()), 'low': float(low), 'high': float(high),
            'better': int((d > 1e-9).sum()), 'worse': int((d < -1e-9).sum()),
            'equal': int((abs(d) <= 1e-9).sum()), 'objects': int(d.size)}


def _object_differences(results: list[dict], base: str, key: str) -> list[float]:
    """Product minus ``base`` per object of every set (only sets that kept per-object figures)."""
    table = PER_OBJECT[key]
    pairs = [(result[table][PRODUCT][c], result[table][base].get(c))
             for result in results if PRODUCT in result.get(table, {}) and base in result[table]
             for c in result[table][PRODUCT]]
    return [a - b for a, b in pairs if a is not None and b is not None]


def summarise(results: list[dict]) -> dict:
    """Return the summary of ``results`` (one ``benchmark_core`` result per seed, N >= 1).

    Raises ValueError when ``results`` is empty or the runs do not share their strategies.
    """
    if not results:
        raise ValueError('no results to summarise')
    names = [row['strategy'] for row in results[0]['summary']]
    for result in results[1:]:
        if [row['strategy'] for row in result['summary']] != names:
            raise ValueError(f"seed {result.get('seed')}: other strategies than seed "
                             f"{results[0].get('seed')}")
    by_seed = [{row['strategy']: row for row in r['summary']} for r in results]
    accuracy = {name: {key: _stats([rows[name][key] for rows in by_seed])
                       for key, _ in ACCURACIES} for name in names}
    wins, paired = {}, {}
    if PRODUCT in names:
        for base in (b for b in SAME_FEATURES if b in names):
            wins[base] = {key: sum(rows[PRODUCT][key] >= rows[base][key] - 1e-9
                                   for rows in by_seed) for key, _ in ACCURACIES}
            differences = {key: _object_differences(results, base, key) for key, _ in ACCURACIES}
            paired[base] = {key: paired_difference(d) for key, d in differences.items() if d}
    open_set = {}
    for result in results:
        for row in result.get('open_set', []):
            if row['untaught'] == 'never_taught' and row['frames'] == 'smoothed':
                entry = open_set.setdefault(row['strategy'], {k: [] for k in OPEN_SET})
                for key in OPEN_SET:
                    entry[key].append(row[key])
    return {'seeds': [r.get('seed') for r in results], 'strategies': names,
            'accuracy': accuracy, 'product_at_least': wins, 'paired': paired,
            'open_set': {name: {k: _stats(v) for k, v in entry.items()}
                         for name, entry in open_set.items()}}


def rows(summary: dict) -> list[dict]:
    """Flatten ``summary`` into CSV rows: one per strategy and figure."""
    figures = [(name, key, stats) for name, by_key in summary['accuracy'].items()
               for key, stats in by_key.items()]
    figures += [(name, f'open_set_smoothed_{key}', stats)
                for name, by_key in summary['open_set'].items() for key, stats in by_key.items()]
    return [{'strategy': name, 'figure': key, 'mean': stats['mean'], 'sd': stats['sd'],
             'min': stats['min'], 'max': stats['max'],
             'per_seed': ' '.join(f'{v:.4f}' for v in stats['values'])}
            for name, key, stats in figures]


def paired_rows(summary: dict) -> list[dict]:
    """Flatten the paired differences into CSV rows: one per read-out and figure."""
    return [{'product': PRODUCT, 'read_out': base, 'figure': key, **by_key[key]}
            for base, by_key in summary.get('paired', {}).items()
            for key, _ in ACCURACIES if key in by_key]


def format_table(summary: dict) -> str:
    """Return the summary as the text table ``benchmark_core --seeds`` prints."""
    n = len(summary['seeds'])
    lines = [f"over {n} object sets (seeds {', '.join(map(str, summary['seeds']))}): top-1 "
             'on unseen backgrounds, mean +- sd (worst set)']
    for name, figures in summary['accuracy'].items():
        parts = [f"{label} {100 * s['mean']:5.1f} +- {100 * s['sd']:4.1f} ({100 * s['min']:5.1f})"
                 for (key, label), s in zip(ACCURACIES, figures.values())]
        lines.append(f'{name:>24}: ' + '   '.join(parts))
    for base, counts in summary['product_at_least'].items():
        lines.append(f'{PRODUCT} >= {base} on the same features: ' + ', '.join(
            f'{label} {counts[key]} of {n}' for key, label in ACCURACIES))
    labels = dict(ACCURACIES)
    for p in paired_rows(summary):
        lines.append(
            f'{PRODUCT} - {p["read_out"]}, {labels[p["figure"]]}, per object: '
            f'{100 * p["mean"]:+.2f} points (95% bootstrap {100 * p["low"]:+.2f} to '
            f'{100 * p["high"]:+.2f}); better on {p["better"]}, worse on {p["worse"]}, equal on '
            f'{p["equal"]} of {p["objects"]} objects')
    for name, figures in summary['open_set'].items():
        lines.append(f'{name} open set, smoothed, never-taught objects: ' + ', '.join(
            f"{key.replace('_', ' ')} {figures[key]['mean']:.3f} (worst "
            f"{figures[key]['max' if key == 'taught_flagged' else 'min']:.3f})"
            for key in OPEN_SET))
    return '\n'.join(lines)

