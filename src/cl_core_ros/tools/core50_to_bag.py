"""Convert the CORe50 folder layout into rosbag2 bags that ``ros2 bag play`` accepts.

One bag per (session, object) by default, or one per session. Frames are stamped 50 ms apart
(20 fps, from their CORe50 frame numbers, so a gap in the numbering stays a gap in time) and
written as ``sensor_msgs/msg/Image`` (rgb8) on ``/image_raw`` or as
``sensor_msgs/msg/CompressedImage`` (png or jpeg) on ``/image_raw/compressed``. Each frame also
gets a ``std_msgs/msg/String`` on ``/core50/label`` with the same timestamp and the JSON
``{session, object, category, frame, stamp_ns}``, so a runner labels frames without guessing;
the bag's custom data (metadata.yaml) summarises sessions, objects, categories and frame counts.
:func:`write_bag` writes one such bag from any frames with ``session``, ``object`` and ``frame``
fields: CORe50 files, or frames rendered in memory
(:class:`~cl_core_ros.data.generated.GeneratedFrame`).

Bags use metadata version 8 (accepted by Humble and newer) and mcap storage unless sqlite3 is
chosen. Usage::

    python -m cl_core_ros.tools.core50_to_bag --root DIR --out DIR \
        [--per object-session|session] [--format raw|png|jpeg] [--storage mcap|sqlite3] \
        [--sessions 1 2 ...] [--objects 1 2 ...]
"""

import argparse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
import json
import logging
from pathlib import Path
import shutil
import sys
import time

import cv2
import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores
from tqdm import tqdm

from cl_core_ros.data.core50 import (
    category_of,
    Core50Error,
    Core50Frame,
    Core50Scan,
    decode_frame,
    FPS,
    FRAME_PERIOD_NS,
    is_plain_rgb_png,
    scan_core50,
    ScanIssue,
    TOLERATED_KINDS,
)
from cl_core_ros.tools.bag_reader import (
    COMPRESSED_TYPE,
    CUSTOM_DATA_KEY,
    FrameLabel,
    full_topic,
    IMAGE_TYPE,
    LABEL_TOPIC,
    STRING_TYPE,
)

logger = logging.getLogger(__name__)

PER_CHOICES = ('object-session', 'session')
FORMAT_CHOICES = ('raw', 'png', 'jpeg')
STORAGE_CHOICES = ('mcap', 'sqlite3')
DEFAULT_TOPIC = 'image_raw'
DEFAULT_FRAME_ID = 'core50_camera'
# 2017-07-14T02:40:00Z: any fixed epoch works; a fixed one keeps conversions reproducible
DEFAULT_START_NS = 1_500_000_000 * 1_000_000_000
SESSION_SPACING_NS = 3600 * 1_000_000_000  # each session starts on its own hour
OBJECT_SPACING_NS = 60 * 1_000_000_000     # and each object on its own minute (<= 1000 frames)
OBJECT_GAP_NS = 1_000_000_000              # pause between objects inside a per-session bag
METADATA_VERSION = 8

_STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
_TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)


def _reliable_qos(depth: int) -> Qos:
    """Offered QoS recorded for both topics: reliable suits best-effort and reliable readers."""
    unset = QosTime(0, 0)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth, reliability=QosReliability.RELIABLE,
               durability=QosDurability.VOLATILE, deadline=unset, lifespan=unset,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=unset,
               avoid_ros_namespace_conventions=False)


@dataclass(frozen=True)
class BagSummary:
    """One bag written by :func:`convert_core50`."""

    path: Path
    sessions: tuple[int, ...]
    objects: tuple[int, ...]
    frames: int
    start_ns: int
    duration_ns: int


@dataclass
class ConversionReport:
    """What :func:`convert_core50` did: bags written, frames, issues (all skipped frames)."""

    scan: Core50Scan
    bags: list[BagSummary] = field(default_factory=list)
    decode_issues: list[ScanIssue] = field(default_factory=list)
    frames_written: int = 0
    elapsed_s: float = 0.0

    @property
    def issues(self) -> list[ScanIssue]:
        """Every issue: those from the scan, then frames that failed to decode."""
        return self.scan.issues + self.decode_issues

    @property
    def blocking_issues(self) -> list[ScanIssue]:
        """The issues ``--strict`` fails on: all but the tolerated gaps in frame numbering."""
        return self.scan.blocking_issues() + self.decode_issues

    @property
    def frames_per_s(self) -> float:
        """Conversion speed (frames written per wall-clock second)."""
        return self.frames_written / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """Return a short human-readable summary."""
        return (f'{self.frames_written} frames into {len(self.bags)} bags in '
                f'{self.elapsed_s:.1f} s ({self.frames_per_s:.0f} frames/s); '
                f'{len(self.issues)} issue(s)')


def bag_name(session: int, obj: int | None = None) -> str:
    """Return the bag folder name: ``core50_s01_o05`` (object-session) or ``core50_s01``."""
    return f'core50_s{session:02d}' + ('' if obj is None else f'_o{obj:02d}')


def sequence_start_ns(session: int, obj: int, start_ns: int = DEFAULT_START_NS) -> int:
    """Return the stamp of frame 000 of (session, object) in an object-session bag."""
    return start_ns + (session - 1) * SESSION_SPACING_NS + (obj - 1) * OBJECT_SPACING_NS


class _BagWriter:
    """Write the frames of one bag: images and labels, stamped on a 20 fps timeline."""

    def __init__(self, path: Path, *, image_format: str, storage: str, topic: str,
                 label_topic: str, frame_id: str, jpeg_quality: int) -> None:
        self.path = path
        self.image_format = image_format
        self.frame_id = frame_id
        self.jpeg_quality = jpeg_quality
        self.writer = Writer(path, version=METADATA_VERSION, storage_plugin=_STORAGES[storage])
        self.msgtype = IMAGE_TYPE if image_format == 'raw' else COMPRESSED_TYPE
        self.topic = full_topic(topic) if image_format == 'raw' else full_topic(topic) + \
            '/compressed'
        self.label_topic = full_topic(label_topic)
        self.sessions: set[int] = set()
        self.frame_counts: dict[str, int] = {}
        self.first_ns: int | None = None
        self.last_ns = 0
        self.count = 0

    def open(self) -> None:
        self.writer.open()
        self.image_conn = self.writer.add_connection(
            self.topic, self.msgtype, typestore=_TYPESTORE,
            offered_qos_profiles=[_reliable_qos(10)])
        self.label_conn = self.writer.add_connection(
            self.label_topic, STRING_TYPE, typestore=_TYPESTORE,
            offered_qos_profiles=[_reliable_qos(100)])

    def _image_message(self, rgb: np.ndarray, encoded: np.ndarray | None, source: object,
                       header: object) -> object:
        types = _TYPESTORE.types
        if self.image_format == 'raw':
            height, width = rgb.shape[:2]
            return types[IMAGE_TYPE](header=header, height=height, width=width, encoding='rgb8',
                                     is_bigendian=0, step=width * 3,
                                     data=np.ascontiguousarray(rgb).reshape(-1))
        if self.image_format == 'png' and encoded is not None and is_plain_rgb_png(encoded):
            data = encoded  # the CORe50 file already is an 8-bit RGB PNG: keep its bytes
        else:
            ext, params = (('.png', []) if self.image_format == 'png' else
                           ('.jpg', [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]))
            ok, data = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
            if not ok:
                raise Core50Error(f'{source}: {self.image_format} encoding failed')
            data = data.reshape(-1)
        # image_transport's convention: "<original encoding>; <codec> compressed <encoding>"
        fmt = f'rgb8; {self.image_format} compressed bgr8'
        return types[COMPRESSED_TYPE](header=header, format=fmt, data=data)

    def write(self, frame: Core50Frame, rgb: np.ndarray, encoded: np.ndarray | None,
              stamp_ns: int) -> None:
        types = _TYPESTORE.types
        stamp = types['builtin_interfaces/msg/Time'](sec=stamp_ns // 1_000_000_000,
                                                      nanosec=stamp_ns % 1_000_000_000)
        header = types['std_msgs/msg/Header'](stamp=stamp, frame_id=self.frame_id)
        label = FrameLabel(frame.session, frame.object, category_of(frame.object), frame.frame,
                           stamp_ns)
        # label first: a subscriber that sees the image already has its label
        self.writer.write(self.label_conn, stamp_ns, _TYPESTORE.serialize_cdr(
            types[STRING_TYPE](data=label.to_json()), STRING_TYPE))
        self.writer.write(self.image_conn, stamp_ns, _TYPESTORE.serialize_cdr(
            self._image_message(rgb, encoded, getattr(frame, 'path', frame), header),
            self.msgtype))
        self.sessions.add(frame.session)
        key = f's{frame.session}/o{frame.object}'
        self.frame_counts[key] = self.frame_counts.get(key, 0) + 1
        self.first_ns = stamp_ns if self.first_ns is None else self.first_ns
        self.last_ns = stamp_ns
        self.count += 1

    def close(self, per: str, extra: dict | None = None) -> BagSummary:
        objects = sorted({int(k.split('/o')[1]) for k in self.frame_counts})
        sessions = sorted(self.sessions)
        custom = {
            **(extra or {}),
            'per': per, 'format': self.image_format, 'fps': FPS,
            'image_topic': self.topic, 'label_topic': self.label_topic,
            'sessions': sessions, 'objects': objects,
            'categories': sorted({category_of(o) for o in objects}),
            'frames': self.frame_counts,
        }
        self.writer.set_custom_data(CUSTOM_DATA_KEY, json.dumps(custom, sort_keys=True))
        self.writer.close()
        first = self.first_ns or 0
        return BagSummary(self.path, tuple(sessions), tuple(objects), self.count, first,
                          self.last_ns - first)

    def abort(self) -> None:
        try:
            self.writer.abort()
        finally:
            shutil.rmtree(self.path, ignore_errors=True)


def _prepare_path(path: Path, overwrite: bool) -> None:
    if not path.exists():
        return
    if not overwrite:
        raise FileExistsError(f'{path} exists: remove it or pass overwrite=True (--overwrite)')
    looks_like_bag = path.is_dir() and all(
        p.name == 'metadata.yaml' or p.suffix in ('.mcap', '.db3', '.db3-shm', '.db3-wal')
        for p in path.iterdir())
    if not looks_like_bag:
        raise FileExistsError(f'{path} exists and does not look like a bag: not removing it')
    shutil.rmtree(path)


def _check_options(per: str, image_format: str, storage: str, jpeg_quality: int) -> None:
    if per not in PER_CHOICES:
        raise ValueError(f'per must be one of {PER_CHOICES}, got {per!r}')
    if image_format not in FORMAT_CHOICES:
        raise ValueError(f'image_format must be one of {FORMAT_CHOICES}, got {image_format!r}')
    if storage not in STORAGE_CHOICES:
        raise ValueError(f'storage must be one of {STORAGE_CHOICES}, got {storage!r}')
    if not 1 <= jpeg_quality <= 100:
        raise ValueError(f'jpeg_quality must be in 1..100, got {jpeg_quality}')


def read_pixels(frame) -> tuple[np.ndarray, np.ndarray | None]:
    """Return a frame's RGB pixels and its encoded bytes (None when it has no file).

    A frame with a ``path`` (:class:`~cl_core_ros.data.core50.Core50Frame`) is read from its
    file, whose bytes a png bag keeps as they are; any other frame is rendered by its
    ``read()`` (:class:`~cl_core_ros.data.generated.GeneratedFrame`). Raises OSError or
    :class:`Core50Error` when a file cannot be read.
    """
    path = getattr(frame, 'path', None)
    if path is None:
        return frame.read(), None
    encoded = np.fromfile(path, dtype=np.uint8)
    return decode_frame(encoded, path), encoded


def write_bag(path: Path | str, sequences: Sequence[Sequence[Core50Frame]], *,
              per: str = 'object-session', image_format: str = 'raw', storage: str = 'mcap',
              topic: str = DEFAULT_TOPIC, label_topic: str = LABEL_TOPIC,
              frame_id: str = DEFAULT_FRAME_ID, start_ns: int = DEFAULT_START_NS,
              jpeg_quality: int = 95, overwrite: bool = False, extra: dict | None = None,
              issues: list[ScanIssue] | None = None,
              on_frame: Callable[[], object] | None = None) -> BagSummary | None:
    """Write one bag of object-sessions of one session, stamped as :func:`convert_core50` does.

    Args:
        path: the bag folder to write.
        sequences: the frames of each object-session, in frame order, all of one session
            (exactly one object-session for ``per='object-session'``). A frame needs
            ``session``, ``object`` (1..50) and ``frame`` fields; its pixels come from
            :func:`read_pixels`.
        per: ``object-session`` or ``session`` (the objects follow one another, 1 s apart).
        image_format, storage, topic, label_topic, frame_id, start_ns, jpeg_quality, overwrite:
            as for :func:`convert_core50`.
        extra: more keys for the bag's custom data (the CORe50 summary keys take precedence).
        issues: receives a :class:`ScanIssue` for each frame that could not be read (skipped)
            and for a bag left with no frame.
        on_frame: called once per frame, before it is read (progress).

    Returns:
        The :class:`BagSummary`, or None when no frame could be read (no bag is left).

    """
    _check_options(per, image_format, storage, jpeg_quality)
    path = Path(path)
    sequences = [list(frames) for frames in sequences if len(frames)]
    sessions = {frame.session for frames in sequences for frame in frames}
    if len(sessions) != 1:
        raise ValueError(f'{path.name}: a bag holds frames of one session, got {sorted(sessions)}')
    if per == 'object-session' and len({f.object for fs in sequences for f in fs}) != 1:
        raise ValueError(f'{path.name}: an object-session bag holds one object')
    issues = [] if issues is None else issues
    _prepare_path(path, overwrite)
    bag = _BagWriter(path, image_format=image_format, storage=storage, topic=topic,
                     label_topic=label_topic, frame_id=frame_id, jpeg_quality=jpeg_quality)
    bag.open()
    try:
        session = sessions.pop()
        offset = start_ns + (session - 1) * SESSION_SPACING_NS
        for frames in sequences:
            if per == 'object-session':
                offset = sequence_start_ns(session, frames[0].object, start_ns)
            for frame in frames:
                if on_frame is not None:
                    on_frame()
                source = getattr(frame, 'path', frame)
                try:
                    rgb, encoded = read_pixels(frame)
                except (OSError, Core50Error) as exc:
                    issues.append(ScanIssue('unreadable', source, f'{exc}: skipped'))
                    logger.warning('skipped unreadable frame %s', source)
                    continue
                bag.write(frame, rgb, encoded, offset + frame.frame * FRAME_PERIOD_NS)
            offset += (frames[-1].frame + 1) * FRAME_PERIOD_NS + OBJECT_GAP_NS
        if bag.count == 0:
            raise Core50Error(f'no readable frames for {path.name}')
        return bag.close(per, extra)
    except Core50Error as exc:
        bag.abort()
        issues.append(ScanIssue('unreadable', path, f'{exc}: no bag written'))
        return None
    except BaseException:
        bag.abort()
        raise


def convert_core50(root: Path | str, out_dir: Path | str, *, per: str = 'object-session',
                   image_format: str = 'raw', storage: str = 'mcap',
                   sessions: Iterable[int] | None = None, objects: Iterable[int] | None = None,
                   topic: str = DEFAULT_TOPIC, label_topic: str = LABEL_TOPIC,
                   frame_id: str = DEFAULT_FRAME_ID, start_ns: int = DEFAULT_START_NS,
                   jpeg_quality: int = 95, size: int | None = None, overwrite: bool = False,
                   progress: bool = True) -> ConversionReport:
    """Convert a CORe50 tree (or a CORe50-like one) into rosbag2 bags under ``out_dir``.

    Args:
        root: ``core50_128x128`` (or ``core50_350x350``) or the folder holding it.
        out_dir: folder receiving one bag folder per object-session (``core50_s01_o01``) or
            per session (``core50_s01``); created if needed.
        per: ``object-session`` or ``session``. In a session bag the objects follow one
            another with a 1 s pause.
        image_format: ``raw`` (Image rgb8), ``png`` or ``jpeg`` (CompressedImage).
        storage: ``mcap`` or ``sqlite3``.
        sessions: sessions to convert (None: all present).
        objects: objects to convert (None: all present).
        topic: image topic (CompressedImage goes to ``<topic>/compressed``).
        label_topic: label topic (std_msgs/String with JSON).
        frame_id: header frame id of the images.
        start_ns: stamp of s1/o1 frame 000; session s starts (s - 1) hours later, and in
            object-session bags object o (o - 1) minutes after that.
        jpeg_quality: JPEG quality (1..100) for ``jpeg``.
        size: 128 or 350 to pick the layout when ``root`` holds both.
        overwrite: replace existing bag folders of the same name.
        progress: show a tqdm progress bar on stderr.

    Returns:
        A :class:`ConversionReport`. Frames that are missing, extra, mislabelled or unreadable
        are skipped and listed in ``report.issues``; nothing is labelled by guess.

    """
    _check_options(per, image_format, storage, jpeg_quality)
    started = time.perf_counter()
    scan = scan_core50(root, sessions=sessions, objects=objects, size=size, verify='header')
    report = ConversionReport(scan=scan)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    groups: dict[tuple[int, ...], list[list[Core50Frame]]] = {}
    for (session, obj), frames in scan.sequences().items():
        key = (session, obj) if per == 'object-session' else (session,)
        groups.setdefault(key, []).append(frames)

    bar = tqdm(total=len(scan.frames), unit='frame', desc='CORe50 -> bag', disable=not progress,
               file=sys.stderr)
    try:
        for key, sequences in sorted(groups.items()):
            summary = write_bag(out_dir / bag_name(*key), sequences, per=per,
                                image_format=image_format, storage=storage, topic=topic,
                                label_topic=label_topic, frame_id=frame_id, start_ns=start_ns,
                                jpeg_quality=jpeg_quality, overwrite=overwrite,
                                issues=report.decode_issues, on_frame=lambda: bar.update(1))
            if summary is not None:
                report.bags.append(summary)
                report.frames_written += summary.frames
    finally:
        bar.close()
    report.elapsed_s = time.perf_counter() - started
    logger.info('CORe50 conversion: %s', report.summary())
    return report


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='python -m cl_core_ros.tools.core50_to_bag',
        description='Convert CORe50 (core50_128x128/s*/o*/C_SS_OO_FFF.png) into rosbag2 bags.')
    parser.add_argument('--root', required=True, type=Path,
                        help='core50_128x128 (or core50_350x350) or the folder holding it')
    parser.add_argument('--out', required=True, type=Path, help='output folder for the bags')
    parser.add_argument('--per', choices=PER_CHOICES, default='object-session',
                        help='one bag per object-session (default) or per session')
    parser.add_argument('--format', choices=FORMAT_CHOICES, default='raw', dest='image_format',
                        help='raw: sensor_msgs/Image rgb8 (default); png/jpeg: CompressedImage')
    parser.add_argument('--storage', choices=STORAGE_CHOICES, default='mcap',
                        help='rosbag2 storage plugin (default mcap)')
    parser.add_argument('--sessions', type=int, nargs='+', metavar='S',
                        help='sessions to convert (default: all present)')
    parser.add_argument('--objects', type=int, nargs='+', metavar='O',
                        help='objects to convert (default: all present)')
    parser.add_argument('--topic', default=DEFAULT_TOPIC,
                        help='image topic (default image_raw; compressed: <topic>/compressed)')
    parser.add_argument('--label-topic', default=LABEL_TOPIC, help='label topic (JSON String)')
    parser.add_argument('--frame-id', default=DEFAULT_FRAME_ID, help='image header frame id')
    parser.add_argument('--size', type=int, choices=(128, 350),
                        help='layout to use when the root holds both')
    parser.add_argument('--jpeg-quality', type=int, default=95, help='JPEG quality 1..100')
    parser.add_argument('--overwrite', action='store_true', help='replace existing bags')
    parser.add_argument('--strict', action='store_true',
                        help='exit with status 1 if any file was skipped or any folder is '
                             'missing; gaps in the frame numbering inside a sequence (the real '
                             'data set has some) are reported but tolerated')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the converter from the command line; return the exit status."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format='%(levelname)s %(name)s: %(message)s')
    try:
        report = convert_core50(
            args.root, args.out, per=args.per, image_format=args.image_format,
            storage=args.storage, sessions=args.sessions, objects=args.objects,
            topic=args.topic, label_topic=args.label_topic, frame_id=args.frame_id,
            jpeg_quality=args.jpeg_quality, size=args.size, overwrite=args.overwrite,
            progress=not args.no_progress)
    except (Core50Error, FileExistsError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    for issue in report.issues:
        print(f'{"reported" if issue.kind in TOLERATED_KINDS else "skipped/reported"}: {issue}',
              file=sys.stderr)
    print(report.scan.summary())
    print(report.summary())
    for bag in report.bags:
        print(f'{bag.path}\t{bag.frames} frames\tsessions {list(bag.sessions)}'
              f'\tobjects {list(bag.objects)}')
    if not report.bags:
        return 1
    return 1 if args.strict and report.blocking_issues else 0


if __name__ == '__main__':
    sys.exit(main())
