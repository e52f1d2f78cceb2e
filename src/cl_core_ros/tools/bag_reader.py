"""Read rosbag2 bags (mcap or sqlite3) with ``rosbags``: messages, frames and CORe50 labels.

No ROS installation is needed. Used by the bag player, the protocol runner and the tests.

A CORe50 bag written by :mod:`cl_core_ros.tools.core50_to_bag` holds, per frame, an image
(``sensor_msgs/msg/Image`` rgb8 or ``sensor_msgs/msg/CompressedImage``) and a
``std_msgs/msg/String`` on ``/core50/label`` whose JSON names the session, object, category and
frame, stamped like the image. :func:`iter_frames` pairs them back; the bag's metadata
``custom_data`` (key :data:`CUSTOM_DATA_KEY`) summarises what the bag contains.
"""

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
import json
import logging
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.typesys import get_typestore, Stores
import yaml

from cl_core_ros.core.compressed_image import compressed_to_rgb
from cl_core_ros.core.raw_image import image_fields_to_rgb

logger = logging.getLogger(__name__)

LABEL_TOPIC = '/core50/label'
CUSTOM_DATA_KEY = 'cl_core_ros.core50'
IMAGE_TYPE = 'sensor_msgs/msg/Image'
COMPRESSED_TYPE = 'sensor_msgs/msg/CompressedImage'
STRING_TYPE = 'std_msgs/msg/String'
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
# how far (bag time) a label may arrive after its image and still be paired with it
PAIRING_WINDOW_NS = 1_000_000_000

# The camera node's defaults: larger images in a bag are refused too.
MAX_PIXELS = 40_000_000
MAX_COMPRESSED_BYTES = 20_000_000


class BagLabelError(ValueError):
    """A label message that cannot be parsed: never guessed, always raised."""


def full_topic(name: str) -> str:
    """Return ``name`` as a fully qualified topic name (leading slash), as rosbag2 stores it."""
    name = name.strip()
    if not name or name == '/':
        raise ValueError(f'invalid topic name {name!r}')
    return name if name.startswith('/') else '/' + name


@dataclass(frozen=True)
class FrameLabel:
    """The CORe50 label of one frame."""

    session: int
    object: int
    category: int
    frame: int
    stamp_ns: int | None = field(default=None, compare=False)

    def to_json(self) -> str:
        """Return the JSON text carried on the label topic."""
        data = {'session': self.session, 'object': self.object, 'category': self.category,
                'frame': self.frame}
        if self.stamp_ns is not None:
            data['stamp_ns'] = self.stamp_ns
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> 'FrameLabel':
        """Parse the label topic's JSON; raise :class:`BagLabelError` if anything is off."""
        try:
            data = json.loads(text)
            values = {key: data[key] for key in ('session', 'object', 'category', 'frame')}
        except (ValueError, TypeError, KeyError) as exc:
            raise BagLabelError(f'bad CORe50 label {text!r}: {exc!r}') from None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values.values()):
            raise BagLabelError(f'bad CORe50 label {text!r}: fields must be integers')
        if values['category'] != (values['object'] - 1) // 5:
            raise BagLabelError(f'bad CORe50 label {text!r}: category disagrees with object')
        stamp = data.get('stamp_ns')
        return cls(**values, stamp_ns=stamp if isinstance(stamp, int) else None)


@dataclass(frozen=True)
class BagInfo:
    """What a bag holds: storage, time span, topics and custom data."""

    path: Path
    storage: str
    version: int | None
    start_ns: int
    duration_ns: int
    message_count: int
    topics: dict[str, tuple[str, int]]  # name -> (message type, count)
    custom_data: dict[str, str]

    @property
    def core50(self) -> dict | None:
        """The CORe50 summary the converter stored in custom data (None if absent)."""
        text = self.custom_data.get(CUSTOM_DATA_KEY)
        return json.loads(text) if text else None


@dataclass(frozen=True)
class BagMessage:
    """One deserialized message (a rosbags message object, not an rclpy one)."""

    topic: str
    msgtype: str
    stamp_ns: int
    msg: object


@dataclass(frozen=True)
class BagFrame:
    """One image from a bag, decoded to RGB, with its CORe50 label when the bag has one."""

    topic: str
    stamp_ns: int          # bag (receive) time
    header_stamp_ns: int   # the image header's stamp
    frame_id: str
    encoding: str          # Image encoding, or CompressedImage format
    image: np.ndarray | None
    label: FrameLabel | None


def _metadata(path: Path) -> dict:
    meta_path = path / 'metadata.yaml'
    if not meta_path.is_file():
        return {}
    with meta_path.open('r', encoding='utf-8') as stream:
        data = yaml.safe_load(stream) or {}
    return data.get('rosbag2_bagfile_information', {}) or {}


def _open(path: Path | str) -> AnyReader:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f'bag {path} does not exist')
    return AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))


def bag_info(path: Path | str) -> BagInfo:
    """Return a :class:`BagInfo` for a bag folder (or a bare .mcap/.db3 file)."""
    path = Path(path)
    meta = _metadata(path) if path.is_dir() else {}
    with _open(path) as reader:
        topics = {name: (info.msgtype or '', info.msgcount)
                  for name, info in reader.topics.items()}
        count = reader.message_count
        start = reader.start_time if count else 0
        duration = reader.duration if count else 0
    storage = meta.get('storage_identifier') or ('mcap' if path.suffix == '.mcap' else 'sqlite3')
    return BagInfo(path=path, storage=storage, version=meta.get('version'), start_ns=start,
                   duration_ns=duration, message_count=count, topics=topics,
                   custom_data=dict(meta.get('custom_data') or {}))


def find_bags(folder: Path | str) -> list[Path]:
    """Return the bag folders (those holding a metadata.yaml) under ``folder``, sorted."""
    folder = Path(folder)
    if (folder / 'metadata.yaml').is_file():
        return [folder]
    return sorted(p.parent for p in folder.rglob('metadata.yaml'))


def iter_messages(path: Path | str, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Yield the bag's messages in time order, deserialized (optionally only some topics)."""
    wanted = None if topics is None else {full_topic(t) for t in topics}
    with _open(path) as reader:
        connections = [c for c in reader.connections
                       if wanted is None or full_topic(c.topic) in wanted]
        if not connections:
            return
        for connection, stamp, raw in reader.messages(connections=connections):
            yield BagMessage(connection.topic, connection.msgtype, stamp,
                             reader.deserialize(raw, connection.msgtype))


def stamp_to_ns(stamp: object) -> int:
    """Return a builtin_interfaces/Time (any object with sec, nanosec) in nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_to_rgb(msg: object, msgtype: str, *, max_pixels: int = MAX_PIXELS,
                 max_bytes: int = MAX_COMPRESSED_BYTES) -> np.ndarray:
    """Decode a sensor_msgs Image or CompressedImage (rosbags or rclpy object) to RGB uint8.

    The same decoders as the camera node (every encoding of
    :data:`cl_core_ros.core.raw_image.SUPPORTED_ENCODINGS`, image_transport formats); raises
    :class:`~cl_core_ros.core.raw_image.FrameError` (a ValueError) for what they refuse.
    """
    if msgtype == COMPRESSED_TYPE:
        return compressed_to_rgb(str(msg.format), msg.data, max_pixels=max_pixels,
                                 max_bytes=max_bytes)
    if msgtype != IMAGE_TYPE:
        raise ValueError(f'{msgtype} is not an image type')
    return image_fields_to_rgb(msg, max_pixels=max_pixels)


def _pick_image_topic(path: Path | str, image_topic: str | None) -> str:
    if image_topic is not None:
        return full_topic(image_topic)
    with _open(path) as reader:
        images = sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})
    if len(images) != 1:
        raise ValueError(f'bag {path} has image topics {images}: choose one with image_topic')
    return images[0]


def iter_frames(path: Path | str, *, image_topic: str | None = None,
                label_topic: str = LABEL_TOPIC, decode: bool = True) -> Iterator[BagFrame]:
    """Yield the images of a bag, in time order, each paired with its CORe50 label.

    A label is paired with the image whose header stamp equals the label's ``stamp_ns`` (or, for
    labels without it, whose bag time equals the label's bag time); a label may come up to
    :data:`PAIRING_WINDOW_NS` after its image. Images without a label get ``label=None``.

    Args:
        path: bag folder, or a bare .mcap/.db3 file.
        image_topic: the image topic; None picks the bag's only image topic.
        label_topic: the label topic (std_msgs/String with JSON).
        decode: decode images to RGB arrays (False leaves ``image`` None: fast counting).

    """
    image_topic = _pick_image_topic(path, image_topic)
    label_topic = full_topic(label_topic)
    labels: dict[int, FrameLabel] = {}
    label_times: deque[tuple[int, int]] = deque()
    pending: deque[tuple[int, int, BagFrame]] = deque()

    def emit(item: tuple[int, int, BagFrame]) -> BagFrame:
        key, stamp, frame = item
        label = labels.pop(key, None)
        if label is None:
            label = labels.pop(stamp, None)
        return frame if label is None else replace(frame, label=label)

    for message in iter_messages(path, [image_topic, label_topic]):
        now = message.stamp_ns
        if message.topic == label_topic:
            if message.msgtype != STRING_TYPE:
                raise BagLabelError(f'{label_topic} has type {message.msgtype}, expected String')
            label = FrameLabel.from_json(message.msg.data)
            key = label.stamp_ns if label.stamp_ns is not None else now
            labels[key] = label
            label_times.append((now, key))
        else:
            header_stamp = stamp_to_ns(message.msg.header.stamp)
            image = image_to_rgb(message.msg, message.msgtype) if decode else None
            encoding = (message.msg.format if message.msgtype == COMPRESSED_TYPE
                        else message.msg.encoding)
            frame = BagFrame(topic=message.topic, stamp_ns=now, header_stamp_ns=header_stamp,
                             frame_id=message.msg.header.frame_id, encoding=encoding,
                             image=image, label=None)
            pending.append((header_stamp or now, now, frame))
        while pending and pending[0][1] < now - PAIRING_WINDOW_NS:
            yield emit(pending.popleft())
        while label_times and label_times[0][0] < now - 2 * PAIRING_WINDOW_NS:
            labels.pop(label_times.popleft()[1], None)
    while pending:
        yield emit(pending.popleft())


def read_frames(path: Path | str, **kwargs) -> list[BagFrame]:
    """Return :func:`iter_frames` as a list (small bags only: every image is kept in memory)."""
    return list(iter_frames(path, **kwargs))
