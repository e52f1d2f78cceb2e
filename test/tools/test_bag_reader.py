"""Bag reader: label pairing on bags not written by the converter, errors, no rclpy needed."""

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from cl_core_ros.tools.bag_reader import (
    bag_info,
    BagLabelError,
    find_bags,
    FrameLabel,
    image_to_rgb,
    read_frames,
)

REPO = Path(__file__).resolve().parents[2]
TS = get_typestore(Stores.ROS2_HUMBLE)
T0 = 1_700_000_000 * 10**9


def image_msg(stamp_ns: int, value: int, encoding: str = 'bgr8'):
    stamp = TS.types['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9,
                                                    nanosec=stamp_ns % 10**9)
    header = TS.types['std_msgs/msg/Header'](stamp=stamp, frame_id='cam')
    # a 2x2 image, rows padded to 8 bytes (step > width * 3), blue-green-red order
    rows = np.zeros((2, 8), np.uint8)
    rows[:, :6] = np.tile([value, 0, 255 - value], 2)
    return TS.types['sensor_msgs/msg/Image'](header=header, height=2, width=2, encoding=encoding,
                                             is_bigendian=0, step=8, data=rows.reshape(-1))


def write_bag(path: Path, items: list[tuple[str, int, object]]) -> Path:
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conns = {}
        for topic, stamp_ns, msg in items:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=TS)
            writer.write(conns[topic], stamp_ns, TS.serialize_cdr(msg, msg.__msgtype__))
    return path


def label_msg(obj: int, frame: int, stamp_ns: int | None):
    label = FrameLabel(session=2, object=obj, category=(obj - 1) // 5, frame=frame,
                       stamp_ns=stamp_ns)
    return TS.types['std_msgs/msg/String'](data=label.to_json())


def test_labels_pair_by_stamp_even_when_recorded_late(tmp_path):
    items = []
    for i in range(5):
        stamp = T0 + i * 50_000_000
        items.append(('/cam/image', stamp + 2_000_000, image_msg(stamp, 10 * i)))
        # a live recording: the label arrives 7 ms after its image, and frame 3 has none
        if i != 3:
            items.append(('/core50/label', stamp + 9_000_000, label_msg(12, i, stamp)))
    bag = write_bag(tmp_path / 'live', sorted(items, key=lambda x: x[1]))
    frames = read_frames(bag)
    assert [f.label.frame if f.label else None for f in frames] == [0, 1, 2, None, 4]
    assert all(f.label is None or (f.label.object, f.label.category) == (12, 2) for f in frames)
    assert frames[1].header_stamp_ns == T0 + 50_000_000 and frames[1].encoding == 'bgr8'
    # bgr8 with padded rows decodes to RGB
    np.testing.assert_array_equal(frames[2].image[0, 0], [255 - 20, 0, 20])
    info = bag_info(bag)
    assert info.storage == 'sqlite3' and info.custom_data == {} and info.core50 is None
    assert find_bags(tmp_path) == [bag]


def test_bad_labels_are_errors_not_guesses(tmp_path):
    wrong_category = TS.types['std_msgs/msg/String'](data=json.dumps(
        {'session': 1, 'object': 6, 'category': 0, 'frame': 0}))
    bag = write_bag(tmp_path / 'bad', [('/core50/label', T0, wrong_category),
                                       ('/image_raw', T0, image_msg(T0, 1))])
    with pytest.raises(BagLabelError):
        read_frames(bag)
    for text in ('not json', '{"session": 1}', '{"session": 1, "object": true, '
                 '"category": 0, "frame": 0}'):
        with pytest.raises(BagLabelError):
            FrameLabel.from_json(text)


def test_image_topic_must_be_chosen_when_ambiguous(tmp_path):
    bag = write_bag(tmp_path / 'two', [('/a', T0, image_msg(T0, 1)),
                                       ('/b', T0, image_msg(T0, 2))])
    with pytest.raises(ValueError):
        read_frames(bag)
    assert [f.topic for f in read_frames(bag, image_topic='b')] == ['/b']
    with pytest.raises(ValueError):
        image_to_rgb(image_msg(T0, 1, encoding='32FC1'), 'sensor_msgs/msg/Image')


def test_converter_and_reader_do_not_need_rclpy():
    code = ('import sys; import cl_core_ros.tools.core50_to_bag, cl_core_ros.tools.bag_reader; '
            'print("rclpy" in sys.modules)')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60, env={'PYTHONPATH': str(REPO / 'src'), 'PATH': '/usr/bin'})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == 'False'


def test_bag_frames_decode_like_the_live_nodes(tmp_path):
    """A real rosbag2 file gives the same pixels as the live nodes: they share one decoder.

    Frames: 8UC3, yuv422_yuy2, nv21, mono16 and a JPEG made from an rgb8 buffer.
    """
    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    from cl_core_ros.nodes.image_conversion import compressed_to_rgb as live_compressed
    from cl_core_ros.nodes.image_conversion import image_to_rgb as live_image
    rng = np.random.default_rng(3)
    header = TS.types['std_msgs/msg/Header'](
        stamp=TS.types['builtin_interfaces/msg/Time'](sec=T0 // 10**9, nanosec=0), frame_id='c')
    raws = {'8UC3': (4, 6, 18, rng.integers(0, 256, 72, np.uint8)),
            'yuv422_yuy2': (4, 6, 12, rng.integers(16, 236, 48, np.uint8)),
            'nv21': (4, 6, 6, rng.integers(16, 236, 36, np.uint8)),
            'mono16': (4, 6, 12, rng.integers(0, 256, 48, np.uint8))}
    items = []
    for i, (enc, (h, w, step, data)) in enumerate(raws.items()):
        items.append((f'/raw_{i}', T0 + i, TS.types['sensor_msgs/msg/Image'](
            header=header, height=h, width=w, encoding=enc, is_bigendian=0, step=step,
            data=data)))
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    jpeg = np.frombuffer(cv2.imencode('.jpg', red)[1].tobytes(), np.uint8)
    items.append(('/jpeg', T0 + 9, TS.types['sensor_msgs/msg/CompressedImage'](
        header=header, format='rgb8; jpeg compressed rgb8', data=jpeg)))
    bag = write_bag(tmp_path / 'encodings', items)
    for i, (enc, (h, w, step, data)) in enumerate(raws.items()):
        frames = read_frames(bag, image_topic=f'/raw_{i}')
        live = live_image(Image(height=h, width=w, encoding=enc, step=step, data=data.tobytes()),
                          max_pixels=10**6)
        assert frames[0].encoding == enc
        np.testing.assert_array_equal(frames[0].image, live)
    frame = read_frames(bag, image_topic='/jpeg')[0]
    np.testing.assert_array_equal(frame.image, live_compressed(
        CompressedImage(format='rgb8; jpeg compressed rgb8', data=jpeg.tobytes()),
        max_pixels=10**6, max_bytes=10**6))
    assert frame.image[8, 8, 0] >= 250 and frame.image[8, 8, 2] <= 5
