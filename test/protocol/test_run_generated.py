"""Protocols on rendered objects (--source hard, --source photos): the stream, fast and ros mode.

The hard stream's stamps and wallpapers come from the Debian package cache (fetched once on
first use); the photos ship with scikit-image.
"""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from cl_core_ros.data.generated import make_source, TEST_SESSIONS
from cl_core_ros.tools import run_protocol
from cl_core_ros.tools.bag_reader import bag_info, read_frames
from cl_core_ros.tools.protocol import build_generated_protocol, ProtocolError

OBJECTS, FRAMES, TEST_FRAMES, SIZE = 3, 10, 5, (160, 120)
ARGS = ['--hard-objects', str(OBJECTS), '--frames-per-experience', str(FRAMES),
        '--test-frames-per-session', str(TEST_FRAMES), '--frame-size', f'{SIZE[0]}x{SIZE[1]}']


def _outputs(out):
    with (out / 'accuracy.csv').open() as stream:
        rows = list(csv.DictReader(stream))
    return rows, json.loads((out / 'summary.json').read_text())


# --- the stream ---------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['hard', 'photos'])
def test_rounds_teach_every_object_once_then_new_sessions(name):
    source = make_source(name, OBJECTS, seed=4, frame_size=SIZE)
    p = build_generated_protocol(source, seed=4, rounds=3, frames_per_experience=FRAMES,
                                 test_frames_per_session=TEST_FRAMES)
    assert p.generated and p.root is None
    assert p.name == f'NICv2-style-{name}-9' and p.total_experiences == 9
    assert all(len(exp.lessons) == 1 for exp in p.experiences)
    rounds = [p.lessons()[k:k + OBJECTS] for k in range(0, 9, OBJECTS)]
    for r, lessons in enumerate(rounds):
        assert sorted(lesson.object for lesson in lessons) == [1, 2, 3]
        assert {lesson.session for lesson in lessons} == {r + 1}
    # the first round introduces one class per experience, the later ones none
    assert [len(exp.new_classes) for exp in p.experiences] == [1] * 3 + [0] * 6
    assert len(set(p.class_labels)) == OBJECTS and p.train_sessions == (1, 2, 3)
    lesson = p.experiences[0].lessons[0]
    assert [f.frame for f in lesson.frames] == list(range(FRAMES))
    assert lesson.label == source.label(lesson.object)
    assert p.test_sessions == TEST_SESSIONS
    assert len(p.test_frames) == OBJECTS * len(TEST_SESSIONS) * TEST_FRAMES
    assert {f.session for f in p.test_frames} == set(TEST_SESSIONS)
    image = p.test_frames[0].read()
    assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8
    # a frame read alone is the frame of its rendered session
    frame = lesson.frames[4]
    assert np.array_equal(frame.read(), source.render(frame.object, frame.session, 0, 5)[4])
    summary = p.summary()
    assert summary['source']['name'] == name and summary['root'] is None
    assert summary['source']['objects'] == {str(o): source.name_of(o) for o in p.objects}


def test_same_seed_same_stream_other_seed_other_one():
    def order(seed):
        source = make_source('photos', 4, seed=seed, frame_size=SIZE)
        p = build_generated_protocol(source, seed=seed, frames_per_experience=2,
                                     test_frames_per_session=1)
        return p.order(), p.class_labels, p.test_frames[0].read()

    a, b, c = order(1), order(1), order(2)
    assert a[:2] == b[:2] and np.array_equal(a[2], b[2])
    assert a[:2] != c[:2]


def test_hard_train_and_test_sessions_never_share_a_background():
    source = make_source('hard', 2, seed=0, frame_size=SIZE)
    train = set(source.details['train_backgrounds'])
    test = set(source.details['test_backgrounds'])
    assert train and test and not train & test
    assert {source.category_names[source.category(o)] for o in source.objects} <= {
        'animals', 'town', 'sports', 'clothes', 'space', 'people', 'military', 'medical',
        'naturalforces'}
    by_category = build_generated_protocol(source, classes='category', frames_per_experience=1,
                                           test_frames_per_session=1)
    assert set(by_category.class_labels) == {source.label(o, 'category') for o in source.objects}


def test_bad_generated_options():
    source = make_source('photos', 2, frame_size=SIZE)
    with pytest.raises(ProtocolError, match='rounds'):
        build_generated_protocol(source, rounds=0)
    with pytest.raises(ValueError, match='objects'):
        make_source('photos', 99)
    with pytest.raises(ValueError, match='32x32'):
        make_source('hard', 2, frame_size=(16, 16))


def test_command_line_checks_the_source_options(tmp_path, capsys):
    for argv, message in (
            (['--source', 'hard', '--root', str(tmp_path)], '--root: for --source core50 only'),
            (['--source', 'photos', '--first-objects', '2'], '--first-objects: for --source'),
            (['--rounds', '2', '--root', str(tmp_path)], '--rounds: for --source hard or'),
            ([], '--source core50 needs --root'),
            (['--source', 'hard', '--frame-size', '640'], 'WIDTHxHEIGHT')):
        with pytest.raises(SystemExit):
            run_protocol.main(['--out', str(tmp_path), *argv])
        assert message in capsys.readouterr().err
    args = run_protocol.parse_args(['--source', 'hard', '--out', str(tmp_path)])
    assert (args.hard_objects, args.rounds, args.frame_size) == (8, 2, (640, 480))
    assert (args.frames_per_experience, args.test_frames_per_session) == (100, 25)
    assert run_protocol.main(['--source', 'photos', '--hard-objects', '40', '--out',
                              str(tmp_path)]) == 2
    assert 'photos: 1..22 objects' in capsys.readouterr().err


# --- fast mode ----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize('name', ['hard', 'photos'])
def test_fast_mode_on_a_generated_source(name, tmp_path):
    out = tmp_path / name
    assert run_protocol.main(['--source', name, '--out', str(out), '--seed', '3', *ARGS,
                              '--fast-only', '--quiet']) == 0
    rows, summary = _outputs(out)
    assert [int(r['experience']) for r in rows] == list(range(1, 2 * OBJECTS + 1))
    assert [int(r['classes_seen']) for r in rows] == [1, 2, 3, 3, 3, 3]
    assert all(r['new_classes'] for r in rows[:OBJECTS]) and not any(
        r['new_classes'] for r in rows[OBJECTS:])
    assert [int(r['frames_used']) for r in rows] == [FRAMES] * 2 * OBJECTS
    categories = [k for k in rows[0] if k.startswith('acc_c')]
    assert categories
    for row in rows:
        assert int(row['test_frames']) == int(row['answered']) == OBJECTS * 4 * TEST_FRAMES
        for key in ('accuracy', 'accuracy_seen', *categories):
            assert 0.0 <= float(row[key]) <= 1.0
    assert summary['source'] == name and summary['mode'] == 'fast' and summary['seed'] == 3
    assert summary['args']['source'] == name
    assert summary['protocol']['source']['name'] == name
    assert summary['protocol']['source']['frame_size'] == list(SIZE)
    assert summary['protocol']['name'] == f'NICv2-style-{name}-{2 * OBJECTS}'
    assert summary['protocol']['test_sessions'] == list(TEST_SESSIONS)
    assert 0.0 <= summary['final_accuracy'] <= 1.0
    assert summary['final_accuracy'] == pytest.approx(float(rows[-1]['accuracy']), abs=1e-6)
    assert summary['published_nicv2_391_final_accuracy'] is None
    assert (out / 'accuracy.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


# --- ros mode -----------------------------------------------------------------------------------

@pytest.mark.ros
@pytest.mark.slow
def test_ros_mode_on_the_hard_stream(tmp_path):
    out = tmp_path / 'ros'
    cmd = [sys.executable, '-m', 'cl_core_ros.tools.run_protocol', '--source', 'hard',
           '--mode', 'ros', '--out', str(out), '--hard-objects', '2', '--experiences', '3',
           '--frames-per-experience', '6', '--test-frames-per-session', '3',
           '--frame-size', '320x240', '--fast-only']
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows, summary = _outputs(out)
    assert summary['source'] == 'hard' and summary['mode'] == 'ros'
    assert [int(r['frames_used']) for r in rows] == [6, 6, 6]
    for row in rows:
        assert int(row['test_frames']) == int(row['answered']) == 2 * 4 * 3
        assert 0.0 <= float(row['accuracy']) <= float(row['accuracy_seen']) <= 1.0
    assert summary['run']['missing_predictions'] == 0
    assert (out / 'accuracy.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    # the bags hold the rendered frames, labelled by object id, and name their source
    source = summary['protocol']['source']
    train = sorted((out / 'bags' / 'train').iterdir())
    assert len(train) == 3 and len(list((out / 'bags' / 'test').iterdir())) == 4
    meta = bag_info(train[0]).core50
    assert meta['source'] == source and meta['sessions'] == [1]
    frames = read_frames(train[0])
    assert [f.label.frame for f in frames] == list(range(6))
    assert frames[0].image.shape == (240, 320, 3)
    assert "learned '" in (out / 'ros' / 'bringup.log').read_text()
