"""benchmark_core over several object sets: statistics, wins, pairs, open set, errors."""

import math

import pytest

from cl_core_ros.tools.seed_summary import (
    format_table,
    paired_difference,
    paired_rows,
    rows,
    summarise,
)


def _result(seed: int, accuracies: dict, open_set: tuple | None = None) -> dict:
    summary = [{'strategy': name, 'accuracy_first_round': first, 'final_accuracy': final}
               for name, (first, final) in accuracies.items()]
    opened = []
    if open_set:
        auroc, never, taught = open_set
        opened = [{'strategy': 'ar1_fast', 'untaught': 'never_taught', 'frames': 'smoothed',
                   'auroc': auroc, 'untaught_flagged': never, 'taught_flagged': taught},
                  # rows the summary must leave out
                  {'strategy': 'ar1_fast', 'untaught': 'never_taught', 'frames': 'per_frame',
                   'auroc': 0.1, 'untaught_flagged': 0.1, 'taught_flagged': 0.9},
                  {'strategy': 'ar1_fast', 'untaught': 'similar_kind', 'frames': 'smoothed',
                   'auroc': 0.2, 'untaught_flagged': 0.2, 'taught_flagged': 0.8}]
    return {'seed': seed, 'summary': summary, 'open_set': opened}


def test_mean_sd_extremes_and_wins_over_seeds():
    results = [
        _result(0, {'ar1_fast': (0.90, 0.96), 'ncm': (0.90, 0.95), 'joint': (0.92, 0.94),
                    'naive': (0.1, 0.5)}, (0.99, 0.80, 0.00)),
        _result(1, {'ar1_fast': (0.80, 1.00), 'ncm': (0.80, 1.00), 'joint': (0.85, 0.99),
                    'naive': (0.2, 0.6)}, (0.95, 0.40, 0.04)),
        _result(2, {'ar1_fast': (1.00, 0.98), 'ncm': (0.99, 0.99), 'joint': (0.90, 0.97),
                    'naive': (0.3, 0.7)}, (0.97, 0.60, 0.02)),
    ]
    s = summarise(results)
    assert s['seeds'] == [0, 1, 2] and s['strategies'] == ['ar1_fast', 'ncm', 'joint', 'naive']
    first = s['accuracy']['ar1_fast']['accuracy_first_round']
    assert first['mean'] == pytest.approx(0.9) and first['sd'] == pytest.approx(0.1)
    assert (first['min'], first['max'], first['values']) == (0.8, 1.0, [0.9, 0.8, 1.0])
    # equal counts as matching; naive is not a read-out on the same features; slda absent
    assert s['product_at_least'] == {
        'ncm': {'accuracy_first_round': 3, 'final_accuracy': 2},
        'joint': {'accuracy_first_round': 1, 'final_accuracy': 3}}
    never = s['open_set']['ar1_fast']
    assert never['auroc']['mean'] == pytest.approx(0.97) and never['auroc']['min'] == 0.95
    assert never['untaught_flagged']['values'] == [0.80, 0.40, 0.60]
    assert never['taught_flagged']['max'] == 0.04
    table = format_table(s)
    assert 'over 3 object sets (seeds 0, 1, 2)' in table
    assert 'ar1_fast >= ncm on the same features: first round 3 of 3, final 2 of 3' in table
    assert 'taught flagged 0.020 (worst 0.040)' in table
    flat = {(r['strategy'], r['figure']): r for r in rows(s)}
    assert flat[('joint', 'final_accuracy')]['min'] == 0.94
    assert flat[('ar1_fast', 'open_set_smoothed_auroc')]['per_seed'] == '0.9900 0.9500 0.9700'


def test_one_seed_has_no_spread_and_missing_values_are_skipped():
    s = summarise([_result(5, {'ar1_fast': (0.5, math.nan), 'slda': (0.4, 0.7)})])
    final = s['accuracy']['ar1_fast']['final_accuracy']
    assert math.isnan(final['mean']) and math.isnan(final['min'])
    assert s['accuracy']['slda']['accuracy_first_round']['sd'] == 0.0
    assert s['open_set'] == {} and 'over 1 object sets (seeds 5)' in format_table(s)


@pytest.mark.parametrize('results, message', [
    ([], 'no results'),
    ([_result(0, {'ar1_fast': (1, 1)}), _result(1, {'ncm': (1, 1)})], 'other strategies'),
])
def test_refuses_what_cannot_be_summarised(results, message):
    with pytest.raises(ValueError, match=message):
        summarise(results)


def test_paired_difference_mean_interval_and_signs():
    d = [0.04, 0.0, -0.04, 0.12, 0.0, 0.08, float('nan')]  # the NaN (no figure) is left out
    p = paired_difference(d)
    assert p['mean'] == pytest.approx(0.2 / 6) and p['objects'] == 6
    assert (p['better'], p['worse'], p['equal']) == (3, 1, 2)
    assert p['low'] < p['mean'] < p['high']
    assert -0.04 <= p['low'] and p['high'] <= 0.12  # a resampled mean stays within the values
    assert paired_difference(d) == p  # seeded: the same summary twice
    wider = paired_difference(d, level=0.99)
    assert wider['low'] <= p['low'] and wider['high'] >= p['high']
    same = paired_difference([0.0, 0.0])
    assert (same['low'], same['high'], same['equal']) == (0.0, 0.0, 2)
    with pytest.raises(ValueError, match='no paired differences'):
        paired_difference([float('nan')])


def test_summary_pairs_objects_across_sets_and_after_each_round():
    def result(seed, first, final):
        r = _result(seed, {'ar1_fast': (0.9, 0.9), 'joint': (0.9, 0.9), 'slda': (0.9, 0.9)})
        r['per_object'] = final
        if first is not None:
            r['per_object_first_round'] = first
        return r

    results = [
        result(0, {'ar1_fast': {'a': 1.0, 'b': 0.8}, 'joint': {'a': 0.9, 'b': 0.8},
                   'slda': {'a': 1.0, 'b': 0.6}},
               {'ar1_fast': {'a': 1.0, 'b': 1.0}, 'joint': {'a': 1.0, 'b': 0.96},
                'slda': {'a': 0.92, 'b': 1.0}}),
        # a set measured before the first-round table existed: only its final figures count
        # and one object without a figure (null in a summary.json) is left out
        result(1, None, {'ar1_fast': {'c': 0.88, 'd': None}, 'joint': {'c': 1.0, 'd': 0.5},
                         'slda': {'c': 0.88}}),
    ]
    s = summarise(results)
    joint = s['paired']['joint']
    assert joint['accuracy_first_round']['objects'] == 2
    assert joint['accuracy_first_round']['mean'] == pytest.approx(0.05)
    assert joint['final_accuracy']['objects'] == 3
    assert joint['final_accuracy']['mean'] == pytest.approx((0.0 + 0.04 - 0.12) / 3)
    assert (joint['final_accuracy']['better'], joint['final_accuracy']['worse']) == (1, 1)
    assert s['paired']['slda']['final_accuracy']['equal'] == 2
    table = format_table(s)
    assert 'ar1_fast - joint, first round, per object: +5.00 points (95% bootstrap' in table
    assert 'better on 1, worse on 1, equal on 1 of 3 objects' in table
    flat = {(r['read_out'], r['figure']): r for r in paired_rows(s)}
    assert set(flat) == {(b, k) for b in ('joint', 'slda')
                         for k in ('accuracy_first_round', 'final_accuracy')}
    assert flat[('slda', 'accuracy_first_round')]['mean'] == pytest.approx(0.1)


def test_no_per_object_figures_no_pairs():
    s = summarise([_result(0, {'ar1_fast': (0.9, 0.9), 'joint': (0.8, 0.8)})])
    assert s['paired'] == {'joint': {}} and paired_rows(s) == []
