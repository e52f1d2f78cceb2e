"""Lesson packs as ROS messages, and which origins ``fleet.accept`` names (no nodes)."""

import pytest
import torch

from cl_core_ros.core.latents import QuantisedTensor
from cl_core_ros.core.lesson_pack import ClassLesson, LessonPack, PackError
from cl_core_ros.nodes.fleet import accepts, msg_to_pack, normalise_accept, pack_to_msg


def _pack(origin='/robot_a/learner') -> LessonPack:
    deep = QuantisedTensor.quantise(torch.rand(3, 2, 1, 1), 'uint8')
    lesson = ClassLesson(
        name='mug', origin=origin, revision=7, pool=torch.rand(3, 4), seen=3, deep=deep,
        deep_seen=3, pending=QuantisedTensor.quantise(torch.rand(0, 2, 1, 1), 'uint8'),
        prototype_sum=torch.rand(4, dtype=torch.float64), prototype_count=3, spread_sum=0.9,
        spread_count=1, cwr_row=torch.rand(4), cwr_count=3)
    return LessonPack(origin=origin, created_utc='2026-01-01T00:00:00.000Z',
                      signature={'feature_dim': 4, 'deep_shape': [2, 1, 1]},
                      upper_fingerprint='0' * 64, replay_dtype='uint8', classes=(lesson,))


def test_a_pack_survives_the_message_bit_for_bit():
    pack = _pack()
    msg, pack_id, size = pack_to_msg(pack)
    assert msg.labels == ['mug'] and msg.origin == '/robot_a/learner' and size > 0
    back, back_id = msg_to_pack(msg)
    assert back_id == pack_id == msg.pack_sha256
    (entry,), (orig,) = back.classes, pack.classes
    assert torch.equal(entry.pool, orig.pool) and torch.equal(entry.deep.data, orig.deep.data)
    assert entry.revision == 7 and entry.spread_sum == pytest.approx(0.9)


@pytest.mark.parametrize('change, reason', [
    ('origin', 'published by /robot_x/learner but made by /robot_a/learner'),
    ('id', 'the message names pack'),
    ('byte', 'tampered pack'),
    ('manifest', 'damaged pack'),
])
def test_a_message_that_does_not_match_its_pack_is_refused(change, reason):
    msg, _, _ = pack_to_msg(_pack())
    if change == 'origin':
        msg.origin = '/robot_x/learner'
    elif change == 'id':
        msg.pack_sha256 = 'f' * 64
    elif change == 'byte':
        msg.tensors[-1] ^= 1
    else:
        msg.manifest = msg.manifest[:-5]
    with pytest.raises(PackError, match=reason):
        msg_to_pack(msg)


def test_accept_names_nodes_namespaces_or_everyone():
    entries = normalise_accept(['robot_a', ' /robot_b/learner ', '', '/fleet/'])
    assert entries == ['/robot_a', '/robot_b/learner', '/fleet']
    assert accepts(entries, '/robot_a/learner')
    assert accepts(entries, '/robot_b/learner') and not accepts(entries, '/robot_b/other')
    assert accepts(entries, '/fleet/north/learner')
    assert not accepts(entries, '/robot_ab/learner') and not accepts(entries, '/learner')
    assert not accepts([], '/robot_a/learner') and accepts(['*'], '/anything/learner')


class _BusyTeacher:
    """A teacher that is learning a lesson for the first ``busy`` import tries."""

    def __init__(self, busy: int):
        from cl_core_ros.core.teacher import Outcome
        self.Outcome, self.busy, self.imported = Outcome, busy, []

    def import_pack(self, pack, pack_id, on_clash, once=False):
        if self.busy:
            self.busy -= 1
            return self.Outcome(False, 'busy learning; try again', {'busy': True})
        self.imported.append(pack_id)
        return self.Outcome(True, f'imported {pack_id[:12]}')


@pytest.mark.ros
def test_a_pack_that_comes_while_the_learner_is_busy_is_imported_later(probe):
    from cl_core_ros.nodes.fleet import Fleet
    teacher = _BusyTeacher(busy=3)
    fleet = Fleet(probe.node, teacher, share=False, accept=['*'], on_clash='merge', history=2)
    try:
        msgs = [pack_to_msg(_pack(f'/robot_{r}/learner'))[0] for r in 'abc']
        for msg in msgs:
            fleet._on_pack(msg)
        # Three packs waited, two may: the oldest gave way (and was counted as refused).
        assert fleet.waiting == 2 and fleet.refused == 1 and fleet.received == 3
        probe.spin_until(lambda: fleet.waiting == 0, 10, 'the waiting packs to be imported')
        assert teacher.imported == [m.pack_sha256 for m in msgs[1:]]
        assert fleet.refused == 1
    finally:
        fleet.close()
