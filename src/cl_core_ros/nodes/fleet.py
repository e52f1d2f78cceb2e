"""Lesson packs over ROS 2 for the learner node: the latched ``/lessons`` topic and the services.

A learner with ``fleet.share: true`` publishes, after every acknowledged lesson (taught here,
durably stored), a pack of the class it taught on ``/lessons`` (cl_core_ros/LessonPack,
reliable, transient local: learners that start later get the last ``fleet.history`` packs). A
learner whose ``fleet.accept`` lists the publisher (its fully qualified name, a namespace it
lies under, or ``*``) imports every pack it receives by the node's ``fleet.on_clash`` policy.
The topic is absolute: robots in their own namespaces share it, as they share ``/tf``; remap it
(``-r /lessons:=/fleet_a/lessons``) to keep separate fleets apart. Packs the learner imported
are never published again (only lessons taught here are), so two learners that accept each
other do not echo. A pack that arrives while the learner is learning a lesson is kept and tried
again every ``RETRY_PERIOD`` seconds until it is imported or refused for a reason of its own
(at most ``fleet.history`` packs wait; the oldest gives way, with a warning).

Every callback here survives any input: a damaged or refused pack is logged and counted.
"""

import array
from collections.abc import Callable
import queue
import threading

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from cl_core_ros.core.lesson_pack import decode, LessonPack, PackError, read_pack, write_pack
from cl_core_ros.core.teacher import Outcome, Teacher
from cl_core_ros.msg import LessonPack as LessonPackMsg

LESSONS_TOPIC = '/lessons'
RETRY_PERIOD = 1.0  # seconds between tries of packs that came while the learner was busy


def normalise_accept(entries: list[str]) -> list[str]:
    """Return the ``fleet.accept`` entries cleaned: stripped, absolute, empty ones dropped."""
    out = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        if entry != '*' and not entry.startswith('/'):
            entry = '/' + entry
        out.append(entry.rstrip('/') or '/')
    return out


def accepts(entries: list[str], origin: str) -> bool:
    """Return True if ``origin`` (a node's fully qualified name) is named by ``entries``.

    An entry matches the node itself (``/robot_a/learner``), any node under a namespace
    (``/robot_a``), or every node (``*``).
    """
    for entry in entries:
        if entry == '*' or origin == entry or origin.startswith(entry.rstrip('/') + '/'):
            return True
    return False


def pack_to_msg(pack: LessonPack) -> tuple[LessonPackMsg, str, int]:
    """Return ``(message, pack_sha256, size in bytes)`` for a pack (PackError if unencodable)."""
    manifest, tensors, pack_id = pack.encode()
    msg = LessonPackMsg(origin=pack.origin, pack_sha256=pack_id, labels=pack.labels,
                        manifest=manifest.decode('ascii'))
    msg.tensors = array.array('B', tensors)
    return msg, pack_id, len(manifest) + len(tensors)


def msg_to_pack(msg: LessonPackMsg) -> tuple[LessonPack, str]:
    """Verify and decode a received pack; PackError says why it is refused."""
    pack, pack_id = decode(msg.manifest.encode('utf-8'), bytes(msg.tensors))
    if pack_id != msg.pack_sha256:
        raise PackError(f'the message names pack {msg.pack_sha256[:12]!r}, its manifest is '
                        f'{pack_id[:12]}')
    if pack.origin != msg.origin:
        raise PackError(f'published by {msg.origin} but made by {pack.origin}')
    return pack, pack_id


class Fleet:
    """The learner node's side of fleet sharing (see the module docstring)."""

    def __init__(self, node: Node, teacher: Teacher, *, share: bool, accept: list[str],
                 on_clash: str, history: int, callback_group=None,
                 on_change: Callable[[], None] | None = None):
        self.node = node
        self.teacher = teacher
        self.share = share
        self.accept = normalise_accept(accept)
        self.on_clash = on_clash
        self.origin = node.get_fully_qualified_name()
        self._on_change = on_change or (lambda: None)
        self.received = 0
        self.refused = 0
        self._waiting: list[tuple[LessonPack, str, str]] = []  # (pack, id, origin): busy
        self._max_waiting = history
        qos = QoSProfile(depth=history, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._pub = node.create_publisher(LessonPackMsg, LESSONS_TOPIC, qos)
        if self.accept:
            guard = getattr(node, 'guard', None)  # the node's CallbackGuard counts the rest
            on_pack = guard.subscription('lessons', self._on_pack) if guard else self._on_pack
            node.create_subscription(LessonPackMsg, LESSONS_TOPIC, on_pack, qos,
                                     callback_group=callback_group)
            retry = guard.timer('lessons retry', self._retry) if guard else self._retry
            self._retry_timer = node.create_timer(RETRY_PERIOD, retry,
                                                  callback_group=callback_group)
        self._lessons: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._share_loop, name='fleet-share',
                                        daemon=True)
        self._worker.start()

    # ----- publishing ---------------------------------------------------------------------------
    def lesson_acknowledged(self, label: str) -> None:
        """Queue the class of an acknowledged local lesson for publishing (if sharing)."""
        if self.share and label:
            self._lessons.put(label)

    def publish(self, labels: list[str] | None) -> Outcome:
        """Publish a pack of ``labels`` (all classes when empty) on ``/lessons``."""
        out = self.teacher.export_classes(labels, self.origin)
        if not out.success:
            return out
        pack = out.details['pack']
        try:
            msg, pack_id, size = pack_to_msg(pack)
        except PackError as exc:
            return Outcome(False, f'cannot publish: {exc}')
        self._pub.publish(msg)
        return Outcome(True, f'published {", ".join(map(repr, pack.labels))} on '
                             f'{LESSONS_TOPIC} ({size / 1e6:.2f} MB)',
                       {'pack_sha256': pack_id, 'size_bytes': size, 'labels': pack.labels})

    def _share_loop(self) -> None:
        while True:
            label = self._lessons.get()
            if label is None:
                return
            try:
                out = self.publish([label])
            except Exception as exc:  # noqa: BLE001 - sharing must never stop the node
                out = Outcome(False, f'cannot publish {label!r}: {exc!r}')
            log = self.node.get_logger()
            (log.info if out.success else log.warning)(f'fleet: {out.message}')

    # ----- files --------------------------------------------------------------------------------
    def export(self, labels: list[str] | None, path: str) -> Outcome:
        """Write a pack of ``labels`` to the new directory ``path``."""
        out = self.teacher.export_classes(labels, self.origin)
        if not out.success:
            return out
        pack = out.details['pack']
        try:
            where, pack_id, size = write_pack(pack, path)
        except (PackError, OSError) as exc:
            return Outcome(False, f'cannot write the pack: {exc}')
        return Outcome(True, f'exported {", ".join(map(repr, pack.labels))} to {where} '
                             f'({size / 1e6:.2f} MB)',
                       {'path': str(where), 'pack_sha256': pack_id, 'size_bytes': size,
                        'labels': pack.labels})

    def import_path(self, path: str, on_clash: str) -> Outcome:
        """Read, verify and import the pack directory ``path``."""
        try:
            pack, pack_id = read_pack(path)
        except PackError as exc:
            return Outcome(False, f'pack refused: {exc}')
        return self.teacher.import_pack(pack, pack_id, on_clash or 'refuse')

    # ----- receiving ----------------------------------------------------------------------------
    def _on_pack(self, msg: LessonPackMsg) -> None:
        try:
            if msg.origin == self.origin or not accepts(self.accept, msg.origin):
                return
            self.received += 1
            pack, pack_id = msg_to_pack(msg)
        except PackError as exc:
            self._report(Outcome(False, f'pack from {msg.origin} refused: {exc}'))
            return
        except Exception as exc:  # noqa: BLE001 - no message may stop the node
            self._report(Outcome(False, f'pack from {msg.origin} failed: {exc!r}'))
            return
        self._try_import(pack, pack_id, msg.origin)

    def _try_import(self, pack: LessonPack, pack_id: str, origin: str) -> bool:
        """Import a received pack; keep it for a later try if the learner is busy.

        Returns False when it was kept.
        """
        try:
            out = self.teacher.import_pack(pack, pack_id, self.on_clash, once=True)
        except Exception as exc:  # noqa: BLE001 - no message may stop the node
            out = Outcome(False, f'pack from {origin} failed: {exc!r}')
        if out.details.get('busy'):
            if all(waiting[1] != pack_id for waiting in self._waiting):
                self._waiting.append((pack, pack_id, origin))
                self.node.get_logger().info(
                    f'fleet: pack {pack_id[:12]} from {origin} waits: {out.message}')
            if len(self._waiting) > self._max_waiting:
                _, dropped, who = self._waiting.pop(0)
                self._report(Outcome(False, f'pack {dropped[:12]} from {who} given up: more '
                                            f'than {self._max_waiting} packs waited'))
            return False
        self._report(out)
        return True

    def _retry(self) -> None:
        """Try the packs that came while the learner was busy, oldest first."""
        while self._waiting:
            pack, pack_id, origin = self._waiting[0]
            if not self._try_import(pack, pack_id, origin):
                return  # still busy: the next tick
            self._waiting.pop(0)

    @property
    def waiting(self) -> int:
        """Packs received while the learner was busy, not yet imported."""
        return len(self._waiting)

    def _report(self, out: Outcome) -> None:
        log = self.node.get_logger()
        if not out.success:
            self.refused += 1
            log.warning(f'fleet: {out.message}')
        else:
            log.info(f'fleet: {out.message}')
        self._on_change()

    def close(self) -> None:
        """Stop the publishing thread."""
        self._lessons.put(None)
        self._worker.join(timeout=5.0)

