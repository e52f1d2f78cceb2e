"""benchmark_core end to end on a tiny hard stream (figures are printed, not asserted)."""

import json
import subprocess
import sys

import pytest

STRATEGIES = {'ar1_fast', 'ar1_fast_deep', 'ncm', 'slda', 'joint', 'naive', 'replay_unbalanced',
              'replay_balanced_no_cwr'}


def _bench(out, *args, timeout=600):
    return subprocess.run([sys.executable, '-m', 'cl_core_ros.tools.benchmark_core', '--out',
                           str(out), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.mark.slow
def test_benchmark_core_writes_every_output(tmp_path):
    out = tmp_path / 'bench'
    result = _bench(
        out, '--classes', '2', '--lessons', '2', '--frames', '6', '--test-sessions', '2',
        '--test-frames', '3', '--never-taught', '1', '--consolidate-every', '2',
        '--deep-epochs', '1', '--scaling', '1,2', '--set', 'fast_epochs=2')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ('summary.json', 'summary.csv', 'accuracy.csv', 'accuracy.png', 'per_object.csv',
                 'per_object_first_round.csv', 'open_set.csv', 'open_set.png', 'timing.csv',
                 'scaling.csv', 'scaling.png'):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['source'] == 'hard' and len(summary['classes']) == 2
    rows = {row['strategy']: row for row in summary['summary']}
    assert set(rows) == STRATEGIES
    for row in rows.values():
        assert 0 <= row['final_accuracy'] <= 1 and 0 <= row['accuracy_first_round'] <= 1
    assert rows['ar1_fast_deep']['deep_updates'] == 2
    assert set(summary['per_object']['ar1_fast']) == set(summary['classes'])
    first = summary['per_object_first_round']
    assert set(first) == STRATEGIES and set(first['ncm']) == set(summary['classes'])
    assert sum(first['ncm'].values()) / 2 == pytest.approx(rows['ncm']['accuracy_first_round'])
    open_set = {(r['strategy'], r['untaught'], r['frames']) for r in summary['open_set']}
    assert ('ar1_fast', 'never_taught', 'smoothed') in open_set
    assert ('ncm', 'never_taught', 'per_frame') in open_set
    assert [r['classes'] for r in summary['scaling']] == [1, 2]
    assert summary['scaling'][-1]['deep_s'] > 0 and summary['timing']['inference_median_s'] > 0
    assert 'AUROC' in result.stdout and 'fast update' in result.stdout


@pytest.mark.slow
def test_benchmark_core_summarises_several_object_sets(tmp_path):
    out = tmp_path / 'bench'
    result = _bench(
        out, '--classes', '2', '--lessons', '1', '--frames', '5', '--test-sessions', '1',
        '--test-frames', '3', '--never-taught', '1', '--skip-deep', '--seeds', '3,4',
        '--set', 'fast_epochs=1', '--joint-epochs', '1')
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    runs = {seed: json.loads((out / f'seed_{seed}' / 'summary.json').read_text())
            for seed in (3, 4)}
    assert [r['seed'] for r in runs.values()] == [3, 4]
    assert runs[3]['classes'] != runs[4]['classes']  # two object sets, not one run twice
    summary = json.loads((out / 'seeds.json').read_text())
    assert summary['seeds'] == [3, 4] and 'ar1_fast_deep' not in summary['strategies']
    final = summary['accuracy']['ar1_fast']['final_accuracy']
    assert final['values'] == [runs[s]['summary'][0]['final_accuracy'] for s in (3, 4)]
    assert final['min'] <= final['mean'] <= final['max']
    assert set(summary['product_at_least']) == {'ncm', 'slda', 'joint'}
    assert len(summary['open_set']['ar1_fast']['auroc']['values']) == 2
    assert (out / 'seeds.csv').read_text().startswith('strategy,figure,mean,sd,min,max')
    paired = summary['paired']['joint']['final_accuracy']
    assert paired['objects'] == 4  # two objects in each of the two sets
    assert paired['low'] <= paired['mean'] <= paired['high']
    assert (out / 'paired.csv').read_text().startswith('product,read_out,figure,mean,low,high')
    assert 'ar1_fast - joint, final, per object:' in result.stdout
    assert 'over 2 object sets (seeds 3, 4)' in result.stdout


def test_benchmark_core_rejects_bad_arguments(tmp_path):
    for bad in (['--classes', '1'], ['--set', 'no_such_field=1'], ['--set', 'fast_lr=abc'],
                ['--seeds', '1,x'], ['--seeds', '1,1'], ['--seeds', '0,1', '--scaling', '1']):
        result = _bench(tmp_path, *bad, timeout=120)
        assert result.returncode == 2 and 'error' in result.stderr, bad
