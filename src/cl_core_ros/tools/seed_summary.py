"""Summary of ``benchmark_core`` over several object sets (``--seeds``): mean, spread, wins.

One hard-stream run measures 8 objects with 4 test sessions each: a session of 25 frames is
3 points of an object's accuracy and 0.4 of the mean, so two strategies that differ by a point
on one object set may swap places on the next. Over several sets (seeds), this module reports
for every strategy the mean, the sample standard deviation and the worst set of its top-1
after the first round and at the end, how many sets the product (``ar1_fast``) scored at least
as well as each read-out on the same features, and the open-set figures of the product
(smoothed, never-taught objects).

Input: the dicts ``benchmark_core.run`` returns (one per seed); nothing here runs a model.
"""

import math
import statistics

PRODUCT = 'ar1_fast'
SAME_FEATURES = ('ncm', 'slda', 'joint')
ACCURACIES = (('accuracy_first_round', 'first round'), ('final_accuracy', 'final'))
OPEN_SET = ('auroc', 'untaught_flagged', 'taught_flagged')


def _stats(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), extremes and the values themselves."""
    clean = [v for v in values if v is not None and math.isfinite(v)]
    if not clean:
        return {'mean': math.nan, 'sd': math.nan, 'min': math.nan, 'max': math.nan,
                'values': values}
    return {'mean': statistics.fmean(clean),
            'sd': statistics.stdev(clean) if len(clean) > 1 else 0.0,
            'min': min(clean), 'max': max(clean), 'values': values}


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
    wins = {}
    if PRODUCT in names:
        for base in (b for b in SAME_FEATURES if b in names):
            wins[base] = {key: sum(rows[PRODUCT][key] >= rows[base][key] - 1e-9
                                   for rows in by_seed) for key, _ in ACCURACIES}
    open_set = {}
    for result in results:
        for row in result.get('open_set', []):
            if row['untaught'] == 'never_taught' and row['frames'] == 'smoothed':
                entry = open_set.setdefault(row['strategy'], {k: [] for k in OPEN_SET})
                for key in OPEN_SET:
                    entry[key].append(row[key])
    return {'seeds': [r.get('seed') for r in results], 'strategies': names,
            'accuracy': accuracy, 'product_at_least': wins,
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
    for name, figures in summary['open_set'].items():
        lines.append(f'{name} open set, smoothed, never-taught objects: ' + ', '.join(
            f"{key.replace('_', ' ')} {figures[key]['mean']:.3f} (worst "
            f"{figures[key]['max' if key == 'taught_flagged' else 'min']:.3f})"
            for key in OPEN_SET))
    return '\n'.join(lines)

