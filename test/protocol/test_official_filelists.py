"""The official NICv2 batch filelists: read, checked against the folder, run in both modes."""

import json
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

from cl_core_ros.data.core50 import make_core50_like
from cl_core_ros.data.core50_filelists import (
    FilelistError,
    find_run_dir,
    parse_filelist,
    read_official_run,
)
from cl_core_ros.tools import run_protocol
from cl_core_ros.tools.protocol import build_official_protocol

# Objects 1, 6 and 11 are the first of categories 0, 1 and 2, so batch 0 holds three
# object-sessions (the real one has ten); s3 is the test session.
OBJECTS = (1, 6, 11)
TRAIN_SESSIONS = (1, 2, 4)
FRAMES = 8
# The batches of two runs, as the authors ship them: s1 of every object first, then one
# object-session per batch, every object's sessions in order, at irregular positions.
RUN_ORDERS = {
    0: [[(1, 1), (1, 6), (1, 11)], [(2, 6)], [(2, 1)], [(4, 6)], [(2, 11)], [(4, 1)],
        [(4, 11)]],
    1: [[(1, 1), (1, 6), (1, 11)], [(2, 11)], [(4, 11)], [(2, 1)], [(2, 6)], [(4, 6)],
        [(4, 1)]],
}


def _line(session: int, obj: int, frame: int, label: int | None = None) -> str:
    label = obj - 1 if label is None else label
    return f's{session}/o{obj}/C_{session:02d}_{obj:02d}_{frame:03d}.png {label}\n'


def write_filelists(base: Path, layout: str = 'NIC_v2_391') -> Path:
    """Write two runs in the official format by hand, a full and a reduced test list."""
    for run, batches in RUN_ORDERS.items():
        run_dir = base / layout / f'run{run}'
        run_dir.mkdir(parents=True)
        for index, batch in enumerate(batches):
            lines = [_line(s, o, f) for s, o in batch for f in range(FRAMES)]
            (run_dir / f'train_batch_{index:02d}_filelist.txt').write_text(''.join(lines))
        if layout.startswith('NIC'):
            (run_dir / 'test_filelist.txt').write_text(
                ''.join(_line(3, o, f) for o in OBJECTS for f in range(FRAMES)))
    # the reduced list: every second test frame (the authors kept every 20th)
    (base / 'test_filelist_20.txt').write_text(
        ''.join(_line(3, o, f) for o in OBJECTS for f in range(0, FRAMES, 2)))
    return base


@pytest.fixture(scope='module')
def official(tmp_path_factory) -> tuple[Path, Path]:
    """Return (CORe50-like folder from real photos, filelists folder)."""
    base = tmp_path_factory.mktemp('official')
    root = make_core50_like(base / 'data', sessions=(*TRAIN_SESSIONS, 3), objects=OBJECTS,
                            frames=FRAMES, seed=11)
    return root, write_filelists(base / 'filelists')


def test_runs_are_read_as_the_authors_wrote_them(official):
    root, filelists = official
    run = read_official_run(filelists, 'nicv2_391', 0)
    assert run.run_dir == filelists / 'NIC_v2_391' / 'run0'
    assert [b.object_sessions() for b in run.batches] == RUN_ORDERS[0]
    assert run.test.path.name == 'test_filelist.txt' and len(run.test.entries) == 3 * FRAMES
    protocol = build_official_protocol(run, root)
    assert protocol.name == 'NICv2-391' and protocol.structure == 'official filelists, run 0'
    # batch 0 is ONE experience of three object-sessions, every frame the list names
    first = protocol.experiences[0]
    assert [lesson.key for lesson in first.lessons] == RUN_ORDERS[0][0]
    assert first.new_classes == ('o01', 'o06', 'o11')
    assert [len(exp.lessons) for exp in protocol.experiences] == [3, 1, 1, 1, 1, 1, 1]
    assert all(len(lesson.frames) == FRAMES for lesson in protocol.lessons())
    assert protocol.order() == [[list(k) for k in batch] for batch in RUN_ORDERS[0]]
    described = protocol.summary()['filelists']
    assert described['run'] == 0 and described['batches'] == 7
    assert len(described['sha256']) == 8 and all(len(h) == 64
                                                  for h in described['sha256'].values())
    # the reduced test list, explicitly or where the authors' layout keeps it
    reduced = read_official_run(filelists, 'nicv2_391', 1,
                                test_filelist=filelists / 'test_filelist_20.txt')
    assert len(reduced.test.entries) == 3 * FRAMES // 2
    assert [b.object_sessions() for b in reduced.batches] == RUN_ORDERS[1]


def test_the_authors_siii_layout_and_its_reduced_test_list(official, tmp_path):
    root, _ = official
    filelists = write_filelists(tmp_path / 'batch_filelists', layout='sIII_v2_391')
    run = read_official_run(tmp_path, 'nicv2_391', 1)
    assert run.run_dir == filelists / 'sIII_v2_391' / 'run1'
    assert run.test.path == filelists / 'test_filelist_20.txt'
    assert find_run_dir(filelists / 'sIII_v2_391' / 'run1', 'nicv2_391', 1) == run.run_dir
    protocol = build_official_protocol(run, root)
    assert len(protocol.test_frames) == 3 * FRAMES // 2
    with pytest.raises(FilelistError, match='no NICv2-79 run 0'):
        read_official_run(tmp_path, 'nicv2_79', 0)


def _broken_copy(filelists: Path, tmp_path: Path, name: str, line: int, text: str) -> Path:
    copy = tmp_path / 'lists'
    shutil.copytree(filelists, copy)
    path = copy / 'NIC_v2_391' / 'run0' / name
    lines = path.read_text().splitlines(keepends=True)
    lines[line - 1] = text
    path.write_text(''.join(lines))
    return copy


def test_a_mismatched_label_is_refused_with_its_line(official, tmp_path, capsys):
    root, filelists = official
    # line 5 of batch 2 names s2/o1 (label 0) but says 5 (object 6)
    broken = _broken_copy(filelists, tmp_path, 'train_batch_02_filelist.txt', 5,
                          _line(2, 1, 4, label=5))
    with pytest.raises(FilelistError, match=r'train_batch_02_filelist.txt:5: label 5 does not '
                                            r'match s2/o1/C_02_01_004.png'):
        parse_filelist(broken / 'NIC_v2_391' / 'run0' / 'train_batch_02_filelist.txt')
    code = run_protocol.main(['--root', str(root), '--out', str(tmp_path / 'out'),
                              '--filelists', str(broken), '--quiet'])
    err = capsys.readouterr().err
    assert code == 2 and 'train_batch_02_filelist.txt:5: label 5' in err
    assert 'Traceback' not in err and not (tmp_path / 'out' / 'summary.json').exists()


@pytest.mark.parametrize('name, line, text, message', [
    ('train_batch_01_filelist.txt', 3, _line(2, 6, 99), 'train_batch_01_filelist.txt:3: '
     's2/o6/C_02_06_099.png not in'),
    ('test_filelist.txt', 2, _line(2, 1, 1), 'test_filelist.txt:2: s2/o1/C_02_01_001.png is '
     'in a test list'),
    ('train_batch_00_filelist.txt', 1, 's1/o6/C_01_01_000.png 0\n', 'train_batch_00_filelist'
     '.txt:1: C_01_01_000.png is filed under s1/o6'),
    ('train_batch_00_filelist.txt', 2, 'garbage\n', 'is not "sS/oO/C_SS_OO_FFF.png LABEL"'),
])
def test_paths_that_disagree_with_the_folder_are_refused(official, tmp_path, name, line, text,
                                                         message):
    root, filelists = official
    broken = _broken_copy(filelists, tmp_path, name, line, text)
    with pytest.raises((FilelistError, ValueError), match=message):
        build_official_protocol(read_official_run(broken, 'nicv2_391', 0), root)


def test_a_gap_in_the_batch_numbering_is_refused(official, tmp_path):
    _, filelists = official
    copy = tmp_path / 'lists'
    shutil.copytree(filelists, copy)
    (copy / 'NIC_v2_391' / 'run0' / 'train_batch_03_filelist.txt').unlink()
    with pytest.raises(FilelistError, match=r'training batches \[3\] are absent'):
        read_official_run(copy, 'nicv2_391', 0)


def _summary(out: Path) -> dict:
    return json.loads((out / 'summary.json').read_text())


@pytest.mark.slow
def test_two_runs_aggregate_as_mean_and_std(official, tmp_path):
    root, filelists = official
    out = tmp_path / 'runs'
    assert run_protocol.main(['--root', str(root), '--out', str(out), '--filelists',
                              str(filelists), '--runs', '0-1', '--experiences', '4',
                              '--consolidate-every', '4', '--quiet']) == 0
    runs = [_summary(out / f'run{r}') for r in (0, 1)]
    assert [r['official_run'] for r in runs] == [0, 1]
    assert [r['protocol']['order'] for r in runs] == [
        [[list(k) for k in batch] for batch in RUN_ORDERS[r][:4]] for r in (0, 1)]
    aggregate = _summary(out)
    finals = [r['final_accuracy'] for r in runs]
    assert aggregate['runs'] == [0, 1]
    assert aggregate['final_accuracy']['values'] == finals
    assert aggregate['final_accuracy']['mean'] == pytest.approx(sum(finals) / 2)
    assert aggregate['final_accuracy']['std'] == pytest.approx(abs(finals[0] - finals[1])
                                                               / 2 ** 0.5)
    assert aggregate['published_final_accuracy']['AR1* without replay'] == {
        'mean': 0.563, 'std': 0.011}
    assert set(aggregate['filelists']) == {'run0', 'run1'}
    assert all(r['timings']['consolidations'] == 1 for r in runs)
    assert (out / 'runs.csv').read_text().count('\n') == 3
    # the taught objects are recognised in the unseen test session
    assert min(finals) >= 0.6
    # the method's default: the deep consolidation after every experience
    default = run_protocol.parse_args(['--root', str(root), '--out', str(out)])
    assert default.consolidate_every == 1
    fast_only = run_protocol.parse_args(['--root', str(root), '--out', str(out), '--fast-only'])
    assert fast_only.consolidate_every == 0


@pytest.mark.slow
@pytest.mark.ros
def test_fast_and_ros_mode_give_the_same_accuracy_matrix(official, tmp_path):
    root, filelists = official
    args = ['--root', str(root), '--filelists', str(filelists), '--run', '1',
            '--experiences', '4', '--consolidate-every', '2']
    assert run_protocol.main([*args, '--out', str(tmp_path / 'fast'), '--quiet']) == 0
    cmd = [sys.executable, '-m', 'cl_core_ros.tools.run_protocol', *args, '--mode', 'ros',
           '--out', str(tmp_path / 'ros')]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    fast, ros = _summary(tmp_path / 'fast'), _summary(tmp_path / 'ros')
    assert ros['mode'] == 'ros' and ros['protocol']['order'] == fast['protocol']['order']
    # the first batch went through label_object(add_to_batch) and ONE start_learning
    log = (tmp_path / 'ros' / 'ros' / 'bringup.log').read_text()
    assert "learned 'o01, o06, o11'" in log and 'Traceback' not in log
    assert ros['run']['missing_predictions'] == 0
    assert ros['timings']['consolidations'] == fast['timings']['consolidations'] == 2
    # the whole test list in both modes, and the same accuracy matrix
    assert ros['protocol']['test_frames'] == fast['protocol']['test_frames'] == 3 * FRAMES
    assert ros['accuracy_matrix'] == fast['accuracy_matrix']
    assert ros['accuracy_curve'] == fast['accuracy_curve']


def test_a_root_with_both_layouts_needs_size(official, tmp_path, capsys):
    root, filelists = official
    both = tmp_path / 'both'
    shutil.copytree(root, both / root.name)
    make_core50_like(both, sessions=(1, 3), objects=(1,), frames=1, size=350)
    args = ['--root', str(both), '--out', str(tmp_path / 'out'), '--filelists',
            str(filelists), '--experiences', '1']
    assert run_protocol.main([*args, '--quiet']) == 2
    err = capsys.readouterr().err
    assert 'holds several layouts' in err and '--size 128' in err and 'Traceback' not in err
    protocol = run_protocol.make_protocol(run_protocol.parse_args([*args, '--size', '128']))
    assert protocol.root == both / 'core50_128x128' and len(protocol.experiences) == 1


def test_a_generated_source_laid_out_as_core50(tmp_path):
    from cl_core_ros.tools.generated_to_core50 import main

    out = tmp_path / 'photos'
    assert main(['--out', str(out), '--source', 'photos', '--objects', '11', '--frames', '2',
                 '--scenario', 'nicv2_196', '--runs', '0-1']) == 0
    info = json.loads((out / 'layout.json').read_text())
    assert sorted(map(int, info['core50_objects'])) == sorted(
        [1, 6, 11, 16, 21, 26, 31, 36, 41, 46, 2])
    runs = [read_official_run(out / 'batch_filelists', 'nicv2_196', r) for r in (0, 1)]
    for run in runs:
        protocol = build_official_protocol(run, out)
        first = protocol.experiences[0]
        # ten categories in the first batch, from s1; then two object-sessions per batch
        assert {lesson.session for lesson in first.lessons} == {1}
        assert sorted(lesson.category for lesson in first.lessons) == list(range(10))
        assert [len(e.lessons) for e in protocol.experiences[1:]] == [2] * 39
        assert protocol.test_sessions == (3, 7, 10) and len(protocol.test_frames) == 3 * 11 * 2
    assert runs[0].batches[1].object_sessions() != runs[1].batches[1].object_sessions()
    assert (out / 'batch_filelists' / 'test_filelist_20.txt').is_file()


@pytest.mark.parametrize('change, message', [
    (lambda root, lists, tmp: ['--root', str(tmp / 'nowhere'), '--filelists', str(lists)],
     'is not a directory'),
    (lambda root, lists, tmp: ['--root', str(root), '--filelists', str(tmp / 'nowhere')],
     'filelists folder'),
    (lambda root, lists, tmp: ['--root', str(root), '--filelists', str(lists), '--run', '7'],
     'no NICv2-391 run 7'),
    (lambda root, lists, tmp: ['--root', str(root), '--filelists', str(lists),
                               '--test-filelist', str(tmp / 'none.txt')],
     'cannot read filelist'),
    (lambda root, lists, tmp: ['--root', str(tmp), '--filelists', str(lists)],
     'no CORe50 layout'),
])
def test_user_errors_end_with_a_message_not_a_traceback(official, tmp_path, capsys, change,
                                                         message):
    root, filelists = official
    argv = [*change(root, filelists, tmp_path), '--out', str(tmp_path / 'out'), '--quiet']
    assert run_protocol.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and 'Traceback' not in err
