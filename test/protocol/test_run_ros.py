"""ROS mode end to end: the protocol taught through the real camera and learner nodes."""

import csv
import json
import subprocess
import sys

import pytest

from cl_core_ros.tools.bag_reader import bag_info, find_bags, read_frames
from cl_core_ros.tools.protocol import build_protocol
from cl_core_ros.tools.run_protocol import index_bags

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ARGS = ['--seed', '2', '--first-objects', '2', '--experiences', '4',
        '--frames-per-experience', '6', '--test-frames-per-session', '5',
        '--consolidate-every', '3']


def _run_cli(root, out, *extra):
    cmd = [sys.executable, '-m', 'cl_core_ros.tools.run_protocol', '--root', str(root),
           '--out', str(out), '--mode', 'ros', *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    with (out / 'accuracy.csv').open() as stream:
        rows = list(csv.DictReader(stream))
    return rows, json.loads((out / 'summary.json').read_text())


@pytest.fixture(scope='module')
def ros_run(core50_small, tmp_path_factory):
    out = tmp_path_factory.mktemp('ros')
    rows, summary = _run_cli(core50_small, out, *ARGS)
    return out, rows, summary


def test_outputs_through_the_nodes(ros_run, core50_small):
    out, rows, summary = ros_run
    protocol = build_protocol(core50_small, seed=2, first_objects=2, experiences=4,
                              frames_per_experience=6, test_frames_per_session=5)
    assert summary['mode'] == 'ros'
    assert summary['protocol']['order'] == protocol.order()  # the fast mode's stream
    assert [int(r['experience']) for r in rows] == [1, 2, 3, 4]
    # every lesson gathered all its frames through camera -> learner, learned by the service
    assert [int(r['frames_used']) for r in rows] == [12, 6, 6, 6]
    for row in rows:
        assert int(row['test_frames']) == int(row['answered']) == 4 * 5  # one per test frame
        assert float(row['update_seconds']) > 0
        assert 0.0 <= float(row['accuracy']) <= float(row['accuracy_seen']) <= 1.0
    assert [int(r['classes_seen']) for r in rows] == [
        len({lesson.label for exp in protocol.experiences[:k + 1] for lesson in exp.lessons})
        for k in range(4)]
    # the learned classes are recognised on the unseen test session
    assert float(rows[-1]['accuracy_seen']) >= 0.6
    assert summary['run']['missing_predictions'] == 0
    assert summary['run']['stale_predictions'] == 0
    assert summary['final_accuracy'] == pytest.approx(float(rows[-1]['accuracy']), abs=1e-6)
    assert summary['forgetting'] is not None
    # consolidation through the learner's service after experience 3
    assert float(rows[2]['consolidation_seconds']) > 0 == float(rows[1]['consolidation_seconds'])
    assert summary['timings']['consolidations'] == 1
    assert (out / 'accuracy.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # the nodes were stopped cleanly and the learner stored every lesson in the fresh state dir
    log = (out / 'ros' / 'bringup.log').read_text()
    assert 'Traceback' not in log
    assert "learned 'o" in log
    assert (out / 'ros' / 'state').is_dir()


def test_bags_read_back_with_rosbags(ros_run, core50_small):
    out, _, _ = ros_run
    protocol = build_protocol(core50_small, seed=2, first_objects=2, experiences=4,
                              frames_per_experience=6, test_frames_per_session=5)
    lesson_bags, test_bags = index_bags(protocol, out / 'bags')
    assert set(lesson_bags) == {lesson.key for lesson in protocol.lessons()}
    for lesson in protocol.lessons():
        frames = read_frames(lesson_bags[lesson.key])
        assert [f.label.frame for f in frames] == [f.frame for f in lesson.frames]
        assert {(f.label.session, f.label.object) for f in frames} == {lesson.key}
        assert frames[0].image.shape == (128, 128, 3)
    assert [bag_info(b).core50['sessions'] for b in test_bags] == [[3]]
    test_frames = read_frames(test_bags[0], decode=False)
    assert sorted((f.label.object, f.label.frame) for f in test_frames) == sorted(
        (f.object, f.frame) for f in protocol.test_frames)
    assert len(find_bags(out / 'bags')) == len(lesson_bags) + 1


def test_bags_can_be_reused(ros_run, core50_small, tmp_path):
    out, rows, _ = ros_run
    args = [a for a in ARGS if a not in ('--consolidate-every', '3')] + ['--fast-only']
    args[args.index('--experiences') + 1] = '2'
    again, summary = _run_cli(core50_small, tmp_path, *args, '--bags', str(out / 'bags'))
    assert summary['run']['bags_dir'] == str(out / 'bags')
    assert not (tmp_path / 'bags').exists()
    assert [r['frames_used'] for r in again] == [r['frames_used'] for r in rows[:2]]
    assert [r['lessons'] for r in again] == [r['lessons'] for r in rows[:2]]
    assert all(int(r['answered']) == int(r['test_frames']) == 20 for r in again)
