"""Fast mode end to end: the core learner taught the protocol, outputs written, deterministic."""

import csv
import json

import pytest

from cl_core_ros.tools import run_protocol
from cl_core_ros.tools.protocol import build_protocol

pytestmark = pytest.mark.slow

ARGS = ['--seed', '5', '--first-objects', '2', '--experiences', '5',
        '--frames-per-experience', '6', '--test-frames-per-session', '6',
        '--consolidate-every', '4', '--quiet']


def _run(root, out, *extra):
    assert run_protocol.main(['--root', str(root), '--out', str(out), *ARGS, *extra]) == 0
    with (out / 'accuracy.csv').open() as stream:
        rows = list(csv.DictReader(stream))
    return rows, json.loads((out / 'summary.json').read_text())


@pytest.fixture(scope='module')
def two_runs(core50_small, tmp_path_factory):
    out = tmp_path_factory.mktemp('fast')
    return [_run(core50_small, out / name) + (out / name,) for name in ('a', 'b')]


def test_outputs_are_written(two_runs, core50_small):
    rows, summary, out = two_runs[0]
    protocol = build_protocol(core50_small, seed=5, first_objects=2, experiences=5,
                              frames_per_experience=6, test_frames_per_session=6)
    assert [int(r['experience']) for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]['lessons'].count('/') == 2 and rows[0]['new_classes'].split() == \
        list(protocol.experiences[0].new_classes)
    assert [int(r['frames_used']) for r in rows] == [12, 6, 6, 6, 6]
    for row in rows:
        assert int(row['test_frames']) == int(row['answered']) == 4 * 6
        assert 0.0 <= float(row['accuracy']) <= float(row['accuracy_seen']) <= 1.0
        assert float(row['update_seconds']) > 0
        for column in ('acc_c0_plug_adapter', 'acc_c1_mobile_phone', 'acc_c2_scissors'):
            assert 0.0 <= float(row[column]) <= 1.0
    assert float(rows[3]['consolidation_seconds']) > 0  # consolidated after experience 4
    assert float(rows[2]['consolidation_seconds']) == 0
    # two of four classes known after the first experience: at most half the test set right
    assert float(rows[0]['accuracy']) <= 0.5 and float(rows[0]['accuracy_seen']) >= 0.5
    assert summary['mode'] == 'fast' and summary['seed'] == 5
    assert summary['experiences_run'] == 5
    assert summary['protocol']['order'] == protocol.order()
    assert summary['protocol']['name'] == protocol.name
    assert summary['final_accuracy'] == pytest.approx(float(rows[-1]['accuracy']), abs=1e-6)
    assert summary['average_accuracy'] == pytest.approx(
        sum(float(r['accuracy']) for r in rows) / 5, abs=1e-6)
    assert summary['forgetting'] is not None and summary['backward_transfer'] is not None
    assert summary['timings']['consolidations'] == 1
    assert summary['timings']['wall_seconds'] > summary['timings']['update_seconds_total'] > 0
    assert (out / 'accuracy.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_same_seed_same_numbers(two_runs):
    (rows_a, sum_a, _), (rows_b, sum_b, _) = two_runs
    numbers = [k for k in rows_a[0] if k.startswith('acc') or k in ('classes_seen',
                                                                     'frames_used')]
    assert [[r[k] for k in numbers] for r in rows_a] == [[r[k] for k in numbers] for r in rows_b]
    for key in ('final_accuracy', 'average_accuracy', 'forgetting', 'backward_transfer',
                'accuracy_matrix', 'protocol'):
        assert sum_a[key] == sum_b[key], key


def test_bad_arguments_exit_with_2(core50_small, tmp_path, capsys):
    assert run_protocol.main(['--root', str(core50_small), '--out', str(tmp_path),
                              '--test-sessions', '9']) == 2
    assert 'no test session' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_protocol.main(['--root', str(core50_small), '--out', str(tmp_path),
                           '--bags', str(tmp_path)])
