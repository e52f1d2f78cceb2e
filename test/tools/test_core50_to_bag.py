"""CORe50 -> rosbag2 converter: both storages, all formats, labels, timing, damaged input, CLI."""

import json
from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.typesys import get_typestore, Stores
import yaml

from cl_core_ros.data.core50 import frame_file_name, read_frame
from cl_core_ros.tools.bag_reader import bag_info, find_bags, read_frames
from cl_core_ros.tools.core50_to_bag import convert_core50, main

REPO = Path(__file__).resolve().parents[2]
PERIOD_NS = 50_000_000


def read_with_rosbags(bag: Path) -> dict[str, list[tuple[int, object]]]:
    """Read a bag with plain rosbags (independent of bag_reader): {topic: [(stamp, msg)]}."""
    out: dict[str, list[tuple[int, object]]] = {}
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        for connection, stamp, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            out.setdefault(connection.topic, []).append((stamp, msg))
    return out


def decode(msg, compressed: bool) -> np.ndarray:
    if compressed:
        return cv2.cvtColor(cv2.imdecode(np.asarray(msg.data), cv2.IMREAD_COLOR),
                            cv2.COLOR_BGR2RGB)
    assert msg.encoding == 'rgb8' and msg.step == msg.width * 3
    return np.asarray(msg.data).reshape(msg.height, msg.width, 3)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize('image_format', ['raw', 'png', 'jpeg'])
def test_object_session_bags(core50_tree, tmp_path, storage, image_format):
    report = convert_core50(core50_tree, tmp_path, image_format=image_format, storage=storage,
                            sessions=[3], objects=[2, 7], progress=False)
    assert report.issues == [] and report.frames_written == 40
    bags = find_bags(tmp_path)
    assert [b.name for b in bags] == ['core50_s03_o02', 'core50_s03_o07']
    assert [b.path for b in report.bags] == bags
    for bag, obj in zip(bags, (2, 7)):
        meta = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        assert meta['version'] == 8 and meta['storage_identifier'] == storage
        suffix = '.mcap' if storage == 'mcap' else '.db3'
        assert meta['relative_file_paths'] == [bag.name + suffix]
        custom = json.loads(meta['custom_data']['cl_core_ros.core50'])
        assert custom['sessions'] == [3] and custom['objects'] == [obj]
        assert custom['categories'] == [(obj - 1) // 5] and custom['frames'] == {f's3/o{obj}': 20}

        topics = read_with_rosbags(bag)
        image_topic = '/image_raw' if image_format == 'raw' else '/image_raw/compressed'
        assert sorted(topics) == sorted([image_topic, '/core50/label'])
        images, labels = topics[image_topic], topics['/core50/label']
        assert len(images) == len(labels) == 20
        stamps = [s for s, _ in images]
        assert np.all(np.diff(stamps) == PERIOD_NS)
        assert [s for s, _ in labels] == stamps
        for frame, ((stamp, image), (_, label)) in enumerate(zip(images, labels)):
            assert json.loads(label.data) == {'session': 3, 'object': obj,
                                              'category': (obj - 1) // 5, 'frame': frame,
                                              'stamp_ns': stamp}
            header_ns = image.header.stamp.sec * 10**9 + image.header.stamp.nanosec
            assert header_ns == stamp
            source = read_frame(core50_tree / f's3/o{obj}' / frame_file_name(3, obj, frame))
            got = decode(image, compressed=image_format != 'raw')
            if image_format == 'jpeg':
                assert image.format == 'rgb8; jpeg compressed bgr8'
                assert np.abs(got.astype(int) - source).mean() < 4
            else:
                np.testing.assert_array_equal(got, source)

        # the package's own reader agrees
        frames = read_frames(bag)
        assert [f.label.frame for f in frames] == list(range(20))
        assert {(f.label.session, f.label.object) for f in frames} == {(3, obj)}
        if image_format != 'jpeg':
            np.testing.assert_array_equal(
                frames[5].image, read_frame(core50_tree / f's3/o{obj}/C_03_{obj:02d}_005.png'))
        info = bag_info(bag)
        assert info.storage == storage and info.version == 8
        assert info.core50['objects'] == [obj] and info.topics[image_topic][1] == 20


def test_session_bags_keep_objects_apart(core50_tree, tmp_path):
    report = convert_core50(core50_tree, tmp_path, per='session', sessions=[1],
                            progress=False)
    assert [b.path.name for b in report.bags] == ['core50_s01']
    assert report.bags[0].objects == (1, 2, 7) and report.bags[0].frames == 60
    frames = read_frames(report.bags[0].path)
    assert [(f.label.object, f.label.frame) for f in frames] == [
        (o, f) for o in (1, 2, 7) for f in range(20)]
    stamps = np.array([f.stamp_ns for f in frames])
    steps = np.diff(stamps)
    assert np.all(steps > 0)
    assert sorted(set(steps.tolist())) == [PERIOD_NS, PERIOD_NS + 1_000_000_000]
    assert json.loads(bag_info(report.bags[0].path).custom_data['cl_core_ros.core50'])[
        'per'] == 'session'


def test_damaged_input_is_skipped_and_reported(core50_copy, tmp_path):
    (core50_copy / 's1/o1/C_01_01_005.png').unlink()
    (core50_copy / 's1/o1/C_01_01_009.png').write_bytes(b'')
    truncated = core50_copy / 's1/o2/C_01_02_004.png'
    truncated.write_bytes(truncated.read_bytes()[:300])
    (core50_copy / 's1/o2/C_01_01_050.png').write_bytes(
        (core50_copy / 's1/o1/C_01_01_000.png').read_bytes())
    (core50_copy / 's1/o2/Thumbs.db').write_bytes(b'junk')
    report = convert_core50(core50_copy, tmp_path / 'bags', sessions=[1], objects=[1, 2],
                            progress=False)
    kinds = sorted((i.kind, i.path.name) for i in report.issues)
    assert kinds == [('extra', 'Thumbs.db'), ('gap', 'o1'), ('mismatch', 'C_01_01_050.png'),
                     ('unreadable', 'C_01_01_009.png'),
                     ('unreadable', 'C_01_02_004.png')]
    first, second = (read_frames(b.path) for b in report.bags)
    assert [f.label.frame for f in first] == [i for i in range(20) if i not in (5, 9)]
    assert [f.label.frame for f in second] == [i for i in range(20) if i != 4]
    assert all(f.label.object == 1 for f in first) and all(f.label.object == 2 for f in second)
    # a gap in the numbering stays a gap in time
    assert (first[5].stamp_ns - first[4].stamp_ns) == 2 * PERIOD_NS
    assert report.frames_written == 37


def test_existing_bags_are_not_overwritten_silently(core50_tree, tmp_path):
    convert_core50(core50_tree, tmp_path, sessions=[1], objects=[1], progress=False)
    with pytest.raises(FileExistsError):
        convert_core50(core50_tree, tmp_path, sessions=[1], objects=[1], progress=False)
    report = convert_core50(core50_tree, tmp_path, sessions=[1], objects=[1], progress=False,
                            overwrite=True, image_format='png')
    assert report.frames_written == 20
    assert bag_info(tmp_path / 'core50_s01_o01').core50['format'] == 'png'
    with pytest.raises(ValueError):
        convert_core50(core50_tree, tmp_path / 'x', per='frame', progress=False)


def test_cli(core50_tree, tmp_path):
    cmd = [sys.executable, '-m', 'cl_core_ros.tools.core50_to_bag', '--root',
           str(core50_tree.parent), '--out', str(tmp_path), '--format', 'png', '--storage',
           'sqlite3', '--sessions', '3', '--objects', '1', '--topic', 'camera/image_raw']
    env = {'PYTHONPATH': str(REPO / 'src'), 'PATH': '/usr/bin:/bin'}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert 'core50_s03_o01\t20 frames' in done.stdout
    info = bag_info(tmp_path / 'core50_s03_o01')
    assert info.storage == 'sqlite3'
    assert info.topics['/camera/image_raw/compressed'] == ('sensor_msgs/msg/CompressedImage', 20)
    # second run: the bag exists, so it fails with a clear message
    assert main(['--root', str(core50_tree), '--out', str(tmp_path), '--sessions', '3',
                 '--objects', '1', '--no-progress']) == 1


def test_strict_tolerates_gaps_in_the_numbering_but_not_missing_folders(core50_copy, tmp_path):
    # like the real s3/o1: the sequence starts at frame 001, and another one has a hole
    (core50_copy / 's3/o1/C_03_01_000.png').unlink()
    (core50_copy / 's1/o2/C_01_02_011.png').unlink()
    args = ['--root', str(core50_copy), '--no-progress', '--strict']
    assert main([*args, '--out', str(tmp_path / 'a')]) == 0
    report = convert_core50(core50_copy, tmp_path / 'b', progress=False)
    assert sorted((i.kind, i.path.name) for i in report.issues) == [('gap', 'o1'), ('gap', 'o2')]
    assert any('C_03_01_000.png' in i.detail for i in report.issues)
    assert report.blocking_issues == []
    # a missing object folder still fails
    for f in (core50_copy / 's3/o7').iterdir():
        f.unlink()
    (core50_copy / 's3/o7').rmdir()
    assert main([*args, '--out', str(tmp_path / 'c')]) == 1
    assert main(['--root', str(core50_copy), '--no-progress', '--out', str(tmp_path / 'd')]) == 0
