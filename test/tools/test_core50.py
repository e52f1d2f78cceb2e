"""CORe50 layout: names, labels, the look-alike generator and scanning of damaged trees."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from cl_core_ros.data.core50 import (
    category_of,
    Core50Error,
    frame_file_name,
    is_test_session,
    locate_core50,
    make_core50_like,
    object_source,
    parse_frame_name,
    read_frame,
    scan_core50,
    TEST_SESSIONS,
)

SESSIONS, OBJECTS, FRAMES = (1, 3), (1, 2, 7), 20  # as in conftest.py


def test_frame_names_round_trip():
    assert frame_file_name(1, 1, 0) == 'C_01_01_000.png'
    assert frame_file_name(11, 50, 299) == 'C_11_50_299.png'
    name = parse_frame_name('C_03_17_042.png')
    assert (name.session, name.object, name.frame, name.category) == (3, 17, 42, 3)
    assert name.file_name == 'C_03_17_042.png'


@pytest.mark.parametrize('bad', [
    'C_1_01_000.png', 'C_01_01_00.png', 'C_01_01_000.jpg', 'C_01_01_000.PNG', 'c_01_01_000.png',
    'C_12_01_000.png', 'C_00_01_000.png', 'C_01_51_000.png', 'C_01_00_000.png', 'notes.txt',
    'C_01_01_000.png.bak',
])
def test_bad_frame_names_are_rejected(bad):
    with pytest.raises(Core50Error):
        parse_frame_name(bad)


def test_categories_and_test_sessions():
    assert [category_of(o) for o in (1, 5, 6, 10, 11, 46, 50)] == [0, 0, 1, 1, 2, 9, 9]
    assert TEST_SESSIONS == (3, 7, 10)
    assert [s for s in range(1, 12) if is_test_session(s)] == [3, 7, 10]
    for bad in (0, 51, '1'):
        with pytest.raises(Core50Error):
            category_of(bad)


def test_generated_tree_has_exactly_the_core50_layout(core50_tree):
    assert core50_tree.name == 'core50_128x128'
    files = sorted(str(p.relative_to(core50_tree)) for p in core50_tree.rglob('*'))
    expected = []
    for s in SESSIONS:
        expected.append(f's{s}')
        for o in OBJECTS:
            expected.append(f's{s}/o{o}')
            expected += [f's{s}/o{o}/C_{s:02d}_{o:02d}_{f:03d}.png' for f in range(FRAMES)]
    assert files == sorted(expected)
    image = cv2.imread(str(core50_tree / 's3/o7/C_03_07_019.png'), cv2.IMREAD_UNCHANGED)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    scan = scan_core50(core50_tree.parent, verify='decode')
    assert scan.issues == []
    assert scan.size == 128 and scan.sessions == list(SESSIONS) and scan.objects == list(OBJECTS)
    for (session, obj), frames in scan.sequences().items():
        assert [f.frame for f in frames] == list(range(FRAMES))
        assert all(f.path.parent.name == f'o{obj}' and f.category == (obj - 1) // 5
                   for f in frames)
        assert all(f.is_test == (session == 3) for f in frames)


def _image(tree: Path, s: int, o: int, f: int) -> np.ndarray:
    return read_frame(tree / f's{s}' / f'o{o}' / frame_file_name(s, o, f)).astype(np.float32)


def test_generated_frames_look_like_a_hand_held_video(core50_tree):
    # each object is a different photo
    assert len({object_source(o)[0] for o in OBJECTS}) == len(OBJECTS)
    first = {o: _image(core50_tree, 1, o, 0) for o in OBJECTS}
    for a in OBJECTS:
        for b in OBJECTS:
            if a < b:
                assert np.abs(first[a] - first[b]).mean() > 20
    # consecutive frames: small, smooth motion (not identical, not a jump)
    diffs = [np.abs(_image(core50_tree, 1, 2, f + 1) - _image(core50_tree, 1, 2, f)).mean()
             for f in range(FRAMES - 1)]
    assert 0.5 < min(diffs) and max(diffs) < 12
    assert np.abs(_image(core50_tree, 1, 2, FRAMES - 1) - first[2]).mean() > max(diffs)
    # the same object in another session: new view, light and background
    assert np.abs(_image(core50_tree, 3, 2, 0) - first[2]).mean() > 15


def test_generator_is_reproducible(tmp_path):
    a = make_core50_like(tmp_path / 'a', sessions=[2], objects=[4, 20], frames=2, seed=3)
    b = make_core50_like(tmp_path / 'b', sessions=[2], objects=[4, 20], frames=2, seed=3)
    c = make_core50_like(tmp_path / 'c', sessions=[2], objects=[4], frames=2, seed=4)
    name = 's2/o4/C_02_04_001.png'
    assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / name).read_bytes() != (c / name).read_bytes()
    # object 20 reuses object 1's photo, but another region of it
    assert object_source(20)[0] == object_source(1)[0] and object_source(20)[1] == 1


def test_full_size_layout(tmp_path):
    layout = make_core50_like(tmp_path, sessions=1, objects=1, frames=2, size=350)
    assert layout == tmp_path / 'core50_350x350'
    assert read_frame(layout / 's1/o1/C_01_01_001.png').shape == (350, 350, 3)
    assert locate_core50(tmp_path) == (layout, 350)
    scan = scan_core50(tmp_path, size=350)
    assert len(scan.frames) == 2 and scan.issues == []
    with pytest.raises(Core50Error):
        make_core50_like(tmp_path, sessions=1, objects=1, frames=1, size=256)


def damage(tree: Path) -> dict[str, Path]:
    """Break a copy of the test tree in every way the scanner must report; return the paths."""
    paths = {}
    gap = tree / 's1/o1/C_01_01_005.png'
    gap.unlink()
    paths['gap'] = gap.parent
    paths['notes'] = tree / 's1/o1/notes.txt'
    paths['notes'].write_text('not a frame')
    paths['short_name'] = tree / 's1/o1/C_01_01_7.png'
    paths['short_name'].write_bytes((tree / 's1/o1/C_01_01_000.png').read_bytes())
    # a frame of object 1 filed under o2: its label would be ambiguous
    paths['mismatch'] = tree / 's1/o2/C_01_01_030.png'
    paths['mismatch'].write_bytes((tree / 's1/o1/C_01_01_000.png').read_bytes())
    paths['not_png'] = tree / 's3/o1/C_03_01_003.png'
    paths['not_png'].write_bytes(b'GIF89a not really')
    # a valid PNG header with a truncated body: only decoding finds it
    paths['truncated'] = tree / 's3/o1/C_03_01_004.png'
    data = paths['truncated'].read_bytes()
    paths['truncated'].write_bytes(data[:len(data) // 2])
    paths['missing_object'] = tree / 's3/o7'
    for f in paths['missing_object'].iterdir():
        f.unlink()
    paths['missing_object'].rmdir()
    paths['s12'] = tree / 's12'
    paths['s12'].mkdir()
    paths['o51'] = tree / 's1/o51'
    paths['o51'].mkdir()
    paths['readme'] = tree / 'README.txt'
    paths['readme'].write_text('x')
    return paths


def test_scan_reports_and_skips_bad_files(core50_copy):
    paths = damage(core50_copy)
    scan = scan_core50(core50_copy)
    by_path = {}
    for issue in scan.issues:
        by_path.setdefault(issue.path, []).append(issue.kind)
    assert by_path[paths['notes']] == ['extra']
    assert by_path[paths['short_name']] == ['extra']
    assert by_path[paths['mismatch']] == ['mismatch']
    assert by_path[paths['not_png']] == ['unreadable']
    assert by_path[paths['missing_object']] == ['missing']
    assert by_path[paths['s12']] == ['extra']
    assert by_path[paths['o51']] == ['extra']
    assert by_path[paths['readme']] == ['extra']
    gap = [i for i in scan.issues_of('gap') if i.path == paths['gap']]
    assert len(gap) == 1 and 'C_01_01_005.png' in gap[0].detail
    assert paths['truncated'] not in by_path  # the header check cannot see it...
    decoded = scan_core50(core50_copy, verify='decode')
    assert [i.path for i in decoded.issues_of('unreadable')] == [paths['not_png'],
                                                                  paths['truncated']]
    # ...and no skipped file is in the index, and every indexed label agrees with its folders
    skipped = {paths[k] for k in ('notes', 'short_name', 'mismatch', 'not_png', 'truncated')}
    assert not skipped & {f.path for f in decoded.frames}
    for frame in decoded.frames:
        name = parse_frame_name(frame.path.name)
        assert frame.path.parent.name == f'o{frame.object}' == f'o{name.object}'
        assert frame.path.parent.parent.name == f's{frame.session}' == f's{name.session}'
    assert len(decoded.frames) == len(SESSIONS) * len(OBJECTS) * FRAMES - 1 - 2 - FRAMES
    assert 'issues:' in decoded.summary()


def test_scan_selection_reports_requested_but_absent(core50_tree):
    scan = scan_core50(core50_tree, sessions=[1, 2], objects=[1, 3])
    missing = sorted(str(i.path.relative_to(core50_tree)) for i in scan.issues_of('missing'))
    assert missing == ['s1/o3', 's2']
    assert {(f.session, f.object) for f in scan.frames} == {(1, 1)}
    with pytest.raises(Core50Error):
        scan_core50(core50_tree, sessions=[12])
    with pytest.raises(Core50Error):
        scan_core50(core50_tree.parent.parent)
