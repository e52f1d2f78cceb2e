"""Play rosbag2 bags with rclpy, for machines without rosbag2 (``ros2 bag play`` stand-in).

Messages are read with ``rosbags``, converted field by field into rclpy messages and published at
the recorded rate (or ``--rate X``; ``--rate 0`` is as fast as possible), optionally with
``/clock`` (rosgraph_msgs/Clock) so nodes can run with ``use_sim_time``. Images go out with
sensor-data QoS (best effort, keep last), the CORe50 label topic and other topics reliable.

Usage::

    python -m cl_core_ros.tools.play_bag BAG [BAG ...] [--rate 1.0] [--topic-remap old:=new]
        [--clock [HZ]] [--topics T ...] [--wait-for-subscribers N] [--ros-args ...]

From Python, :func:`play` plays one bag on an existing node; :class:`BagPlayer` keeps its
publishers between bags (no rediscovery, so no lost first messages) for a protocol runner.
"""

import argparse
import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
import importlib
from pathlib import Path
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    qos_profile_sensor_data,
    QoSProfile,
    ReliabilityPolicy,
)
from rosgraph_msgs.msg import Clock

from cl_core_ros.tools.bag_reader import (
    bag_info,
    COMPRESSED_TYPE,
    full_topic,
    IMAGE_TYPE,
    IMAGE_TYPES,
    iter_messages,
    STRING_TYPE,
)

CLOCK_TOPIC = '/clock'
DEFAULT_CLOCK_HZ = 40.0
RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)
CLOCK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                       reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.VOLATILE)

_ARRAY_TYPECODES = {'int8': 'b', 'uint8': 'B', 'octet': 'B', 'char': 'B', 'int16': 'h',
                    'uint16': 'H', 'int32': 'i', 'uint32': 'I', 'int64': 'q', 'uint64': 'Q',
                    'float': 'f', 'double': 'd', 'float32': 'f', 'float64': 'd'}
_NUMPY_DTYPES = {'int8': np.int8, 'uint8': np.uint8, 'octet': np.uint8, 'char': np.uint8,
                 'int16': np.int16, 'uint16': np.uint16, 'int32': np.int32,
                 'uint32': np.uint32, 'int64': np.int64, 'uint64': np.uint64,
                 'float': np.float32, 'double': np.float64, 'float32': np.float32,
                 'float64': np.float64}


# --- rosbags message -> rclpy message ---------------------------------------------------------

def rclpy_message_class(msgtype: str) -> type:
    """Return the rclpy class of ``pkg/msg/Name`` (or ``pkg/Name``)."""
    parts = msgtype.split('/')
    if len(parts) == 2:
        parts = [parts[0], 'msg', parts[1]]
    if len(parts) != 3:
        raise ValueError(f'bad message type {msgtype!r}')
    package, kind, name = parts
    try:
        return getattr(importlib.import_module(f'{package}.{kind}'), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f'message type {msgtype} is not importable in rclpy: {exc}') from None


def _byte_array(data: object) -> array.array:
    out = array.array('B')
    out.frombytes(np.ascontiguousarray(data, dtype=np.uint8).tobytes()
                  if isinstance(data, np.ndarray) else bytes(data))
    return out


def _convert_field(value: object, type_name: str) -> object:
    """Convert one field value of a rosbags message to what the rclpy setter expects."""
    if type_name.startswith('sequence<'):
        kind, base = 'sequence', type_name[len('sequence<'):-1].split(',')[0].strip()
    elif type_name.endswith(']'):
        kind, base = 'array', type_name[:type_name.index('[')]
    else:
        kind, base = 'scalar', type_name
    if base.startswith(('string<', 'wstring<')):
        base = base.split('<')[0]
    if '/' in base:
        cls = rclpy_message_class(base)
        if kind == 'scalar':
            return to_rclpy_message(value, cls)
        return [to_rclpy_message(v, cls) for v in value]
    if kind == 'scalar':
        return value.item() if isinstance(value, np.generic) else value
    if base in _ARRAY_TYPECODES:
        values = np.ascontiguousarray(value, dtype=_NUMPY_DTYPES[base])
        if kind == 'array':
            return values
        out = array.array(_ARRAY_TYPECODES[base])
        out.frombytes(values.tobytes())
        return out
    return [v.item() if isinstance(v, np.generic) else v for v in value]


def _header(header: object) -> object:
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header
    return Header(stamp=Time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec)),
                  frame_id=header.frame_id)


def to_rclpy_message(msg: object, cls: type | None = None) -> object:
    """Convert a rosbags-deserialized message into an instance of its rclpy class.

    Image, CompressedImage and String take a fast path; any other type is converted
    recursively, field by field, from the rclpy class's field types.
    """
    msgtype = getattr(msg, '__msgtype__', None)
    if cls is None:
        if msgtype is None:
            raise ValueError(f'{type(msg).__name__} is not a rosbags message')
        cls = rclpy_message_class(msgtype)
    if msgtype == IMAGE_TYPE:
        return cls(header=_header(msg.header), height=int(msg.height), width=int(msg.width),
                   encoding=msg.encoding, is_bigendian=int(msg.is_bigendian),
                   step=int(msg.step), data=_byte_array(msg.data))
    if msgtype == COMPRESSED_TYPE:
        return cls(header=_header(msg.header), format=msg.format, data=_byte_array(msg.data))
    if msgtype == STRING_TYPE:
        return cls(data=msg.data)
    out = cls()
    for name, type_name in cls.get_fields_and_field_types().items():
        setattr(out, name, _convert_field(getattr(msg, name), type_name))
    return out


# --- playback --------------------------------------------------------------------------------

@dataclass
class PlayStats:
    """What one playback did."""

    messages: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    first_stamp_ns: int | None = None
    last_stamp_ns: int | None = None
    wall_s: float = 0.0
    stopped: bool = False

    @property
    def bag_span_s(self) -> float:
        """Recorded time between the first and the last published message."""
        if self.first_stamp_ns is None or self.last_stamp_ns is None:
            return 0.0
        return (self.last_stamp_ns - self.first_stamp_ns) / 1e9

    @property
    def achieved_rate(self) -> float:
        """Recorded seconds played per wall-clock second (1.0 = real time)."""
        return self.bag_span_s / self.wall_s if self.wall_s > 0 else 0.0


def parse_remaps(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Parse ``old:=new`` strings (or a mapping) into fully qualified {old: new} names."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {full_topic(old): full_topic(new) for old, new in items.items()}
    remaps = {}
    for item in items:
        old, sep, new = item.partition(':=')
        if not sep:
            raise ValueError(f'bad topic remap {item!r}: expected old:=new')
        remaps[full_topic(old)] = full_topic(new)
    return remaps


def _default_qos(msgtype: str) -> QoSProfile:
    return qos_profile_sensor_data if msgtype in IMAGE_TYPES else RELIABLE_QOS


class BagPlayer:
    """Publishes bags on a node; publishers are kept between bags until :meth:`close`."""

    def __init__(self, node: Node, *, topic_remap: Iterable[str] | Mapping[str, str] | None = None,
                 clock: bool = False, clock_topic: str = CLOCK_TOPIC,
                 clock_hz: float = DEFAULT_CLOCK_HZ,
                 qos: Callable[[str, str], QoSProfile] | None = None) -> None:
        """Create a player.

        Args:
            node: the node that owns the publishers (spinning it is not required).
            topic_remap: ``old:=new`` strings or a {old: new} mapping.
            clock: publish rosgraph_msgs/Clock on ``clock_topic``: the stamp of each message
                just before it, and at ``clock_hz`` while waiting between messages.
            clock_topic: topic of the clock.
            clock_hz: clock rate while waiting (> 0).
            qos: optional ``qos(topic, msgtype)`` override; default sensor-data QoS for images
                and reliable (keep last 100) for everything else.

        """
        if clock_hz <= 0:
            raise ValueError(f'clock_hz must be > 0, got {clock_hz}')
        self.node = node
        self.remap = parse_remaps(topic_remap)
        self.clock_period_s = 1.0 / clock_hz
        self.qos = qos or (lambda _topic, msgtype: _default_qos(msgtype))
        self.clock_pub = node.create_publisher(Clock, clock_topic, CLOCK_QOS) if clock else None
        self.publishers: dict[tuple[str, str], object] = {}
        self.classes: dict[str, type] = {}
        self.skipped: set[tuple[str, str]] = set()
        self._warned_remaps: set[str] = set()

    def _publisher(self, topic: str, msgtype: str):
        key = (topic, msgtype)
        if key not in self.publishers:
            cls = self.classes.setdefault(msgtype, rclpy_message_class(msgtype))
            out_topic = self.remap.get(topic, topic)
            self.publishers[key] = self.node.create_publisher(
                cls, out_topic, self.qos(out_topic, msgtype))
        return self.publishers[key]

    def prepare(self, bag_path, topics: Iterable[str] | None = None) -> list[object]:
        """Create the publishers for a bag's topics now; return them."""
        info = bag_info(bag_path)
        wanted = None if topics is None else {full_topic(t) for t in topics}
        unknown = set(self.remap) - set(info.topics) - self._warned_remaps
        for name in sorted(unknown):
            self.node.get_logger().warning(f'remap of {name}: no such topic in {bag_path}')
            self._warned_remaps.add(name)
        publishers = []
        for name, (msgtype, _) in sorted(info.topics.items()):
            if wanted is not None and name not in wanted or (name, msgtype) in self.skipped:
                continue
            try:
                publishers.append(self._publisher(name, msgtype))
            except ValueError as exc:  # a type this rclpy cannot import: skip, say so once
                self.node.get_logger().warning(f'not playing {name}: {exc}')
                self.skipped.add((name, msgtype))
        return publishers

    def wait_for_subscribers(self, publishers: Sequence[object], count: int, timeout_s: float,
                             stop_event: threading.Event | None = None) -> bool:
        """Wait (bounded) until every publisher has ``count`` subscriptions; True if so."""
        stop_event = stop_event or threading.Event()
        deadline = time.monotonic() + timeout_s
        while not all(p.get_subscription_count() >= count for p in publishers):
            if time.monotonic() >= deadline or stop_event.wait(0.02):
                missing = [p.topic_name for p in publishers if p.get_subscription_count() < count]
                self.node.get_logger().warning(
                    f'gave up waiting for {count} subscriber(s) on {missing}')
                return False
        return True

    def _publish_clock(self, stamp_ns: int) -> None:
        if self.clock_pub is not None:
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
            self.clock_pub.publish(msg)

    def play(self, bag_path, *, rate: float = 1.0, topics: Iterable[str] | None = None,
             wait_for_subscribers: int = 0, wait_timeout_s: float = 10.0,
             stop_event: threading.Event | None = None,
             on_message: Callable[[str, int, object], None] | None = None) -> PlayStats:
        """Publish one bag's messages in time order.

        Args:
            bag_path: bag folder (or a bare .mcap/.db3 file).
            rate: playback speed, 1.0 = recorded rate; 0 = as fast as possible.
            topics: only these bag topics (default all).
            wait_for_subscribers: before playing, wait until each publisher has this many
                subscriptions (DDS discovery takes seconds), at most ``wait_timeout_s``.
            wait_timeout_s: bound of that wait.
            stop_event: set it to stop playback early (checked while waiting).
            on_message: called as ``on_message(topic, stamp_ns, rclpy_msg)`` after each publish
                (topic after remapping).

        Returns:
            :class:`PlayStats`.

        """
        if rate < 0:
            raise ValueError(f'rate must be >= 0 (0: as fast as possible), got {rate}')
        stop_event = stop_event or threading.Event()
        publishers = self.prepare(bag_path, topics)
        if wait_for_subscribers > 0:
            self.wait_for_subscribers(publishers, wait_for_subscribers, wait_timeout_s,
                                      stop_event)
        stats = PlayStats()
        wall0 = None
        next_clock = 0.0
        for message in iter_messages(bag_path, topics):
            if stats.first_stamp_ns is None:
                stats.first_stamp_ns = message.stamp_ns
                wall0 = time.monotonic()
            if rate > 0:
                due = wall0 + (message.stamp_ns - stats.first_stamp_ns) / 1e9 / rate
                while True:
                    now = time.monotonic()
                    if now >= due:
                        break
                    if self.clock_pub is not None and now >= next_clock:
                        elapsed_ns = int((now - wall0) * rate * 1e9)
                        self._publish_clock(stats.first_stamp_ns + elapsed_ns)
                        next_clock = now + self.clock_period_s
                    wake = min(due, next_clock) if self.clock_pub is not None else due
                    if stop_event.wait(max(0.0, wake - now)):
                        break
            if stop_event.is_set():
                stats.stopped = True
                break
            if (message.topic, message.msgtype) in self.skipped:
                continue
            publisher = self._publisher(message.topic, message.msgtype)
            out = to_rclpy_message(message.msg, self.classes[message.msgtype])
            self._publish_clock(message.stamp_ns)
            publisher.publish(out)
            stats.messages += 1
            stats.per_topic[publisher.topic_name] = stats.per_topic.get(
                publisher.topic_name, 0) + 1
            stats.last_stamp_ns = message.stamp_ns
            if on_message is not None:
                on_message(publisher.topic_name, message.stamp_ns, out)
        if wall0 is not None:
            stats.wall_s = time.monotonic() - wall0
        return stats

    def flush(self, timeout_s: float = 2.0) -> bool:
        """Wait (bounded) until reliable subscribers acknowledged everything published."""
        ok = True
        for publisher in self.publishers.values():
            if publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE:
                ok = publisher.wait_for_all_acked(Duration(seconds=timeout_s)) and ok
        return ok

    def close(self) -> None:
        """Destroy the publishers."""
        for publisher in self.publishers.values():
            self.node.destroy_publisher(publisher)
        self.publishers.clear()
        if self.clock_pub is not None:
            self.node.destroy_publisher(self.clock_pub)
            self.clock_pub = None


def play(bag_path, node: Node, *, rate: float = 1.0,
         topic_remap: Iterable[str] | Mapping[str, str] | None = None, clock: bool = False,
         clock_hz: float = DEFAULT_CLOCK_HZ, topics: Iterable[str] | None = None,
         wait_for_subscribers: int = 0, wait_timeout_s: float = 10.0,
         stop_event: threading.Event | None = None,
         on_message: Callable[[str, int, object], None] | None = None) -> PlayStats:
    """Play one bag on ``node`` and return :class:`PlayStats` (see :meth:`BagPlayer.play`).

    The publishers are destroyed afterwards (after waiting, bounded, for reliable subscribers to
    acknowledge); to play several bags in a row without rediscovery use :class:`BagPlayer`.
    """
    player = BagPlayer(node, topic_remap=topic_remap, clock=clock, clock_hz=clock_hz)
    try:
        stats = player.play(bag_path, rate=rate, topics=topics,
                            wait_for_subscribers=wait_for_subscribers,
                            wait_timeout_s=wait_timeout_s, stop_event=stop_event,
                            on_message=on_message)
        player.flush()
        return stats
    finally:
        player.close()


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m cl_core_ros.tools.play_bag',
        description='Play rosbag2 bags (mcap or sqlite3) with rclpy, without rosbag2.')
    parser.add_argument('bags', nargs='+', metavar='BAG', help='bag folder(s), played in order')
    parser.add_argument('--rate', type=float, default=1.0,
                        help='playback rate (1.0 = recorded; 0 = as fast as possible)')
    parser.add_argument('--topic-remap', action='append', default=[], metavar='OLD:=NEW',
                        help='publish bag topic OLD as NEW (repeatable)')
    parser.add_argument('--clock', nargs='?', type=float, const=DEFAULT_CLOCK_HZ, default=None,
                        metavar='HZ', help=f'publish /clock (default {DEFAULT_CLOCK_HZ:g} Hz '
                                           'between messages)')
    parser.add_argument('--topics', nargs='+', metavar='TOPIC', help='only these topics')
    parser.add_argument('--wait-for-subscribers', type=int, default=0, metavar='N',
                        help='before playing, wait until every topic has N subscribers')
    parser.add_argument('--wait-timeout', type=float, default=10.0, metavar='S',
                        help='bound of that wait in seconds (default 10)')
    parser.add_argument('--node-name', default='bag_player', help='player node name')
    args = parser.parse_args(argv)
    if args.rate < 0:
        parser.error('--rate must be >= 0')
    if args.clock is not None and args.clock <= 0:
        parser.error('--clock frequency must be > 0')
    return args


def split_ros_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split arguments into (tool arguments, the ``--ros-args ... [--]`` section).

    Tool arguments are kept away from rcl, whose legacy parser would take ``old:=new`` values
    for remapping rules of the player node itself.
    """
    argv = list(argv)
    if '--ros-args' not in argv:
        return argv, []
    start = argv.index('--ros-args')
    rest = argv[start:]
    if '--' in rest:
        end = rest.index('--')
        return argv[:start] + rest[end + 1:], rest[:end]
    return argv[:start], rest


def main(argv: Sequence[str] | None = None) -> int:
    """Play bags from the command line; return the exit status."""
    tool_args, ros_args = split_ros_args(sys.argv[1:] if argv is None else argv)
    args = _parse_args(tool_args)
    missing = [bag for bag in args.bags if not Path(bag).exists()]
    if missing:  # checked before DDS starts
        print(f'error: no such bag: {", ".join(missing)}', file=sys.stderr)
        return 1
    rclpy.init(args=['play_bag', *ros_args])
    node = rclpy.create_node(args.node_name)
    player = None
    status = 0
    try:
        player = BagPlayer(node, topic_remap=args.topic_remap, clock=args.clock is not None,
                           clock_hz=args.clock or DEFAULT_CLOCK_HZ)
        for bag in args.bags:
            stats = player.play(bag, rate=args.rate, topics=args.topics,
                                wait_for_subscribers=args.wait_for_subscribers,
                                wait_timeout_s=args.wait_timeout)
            node.get_logger().info(
                f'{bag}: {stats.messages} messages, {stats.bag_span_s:.2f} s of bag in '
                f'{stats.wall_s:.2f} s (rate {stats.achieved_rate:.2f}); {stats.per_topic}')
        player.flush()
    except (KeyboardInterrupt, ExternalShutdownException):
        status = 130
    except (ValueError, FileNotFoundError) as exc:
        node.get_logger().error(str(exc))
        status = 1
    finally:
        if player is not None:
            player.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return status


if __name__ == '__main__':
    sys.exit(main())
