"""A Teacher on NFS and SMB/9p state directories: lessons are stored, weaker guarantees said.

The filesystems' errno behaviour is simulated (``test/fs_sim.py``); the learner, its
pretrained backbone and the store are real.
"""

import os

from fs_sim import BEHAVIOURS, SimulatedMount
import pytest

from cl_core_ros.core.learner import Learner
from cl_core_ros.core.state_store import StateStore
from cl_core_ros.core.teacher import Teacher
from cl_core_ros.data.photos import render_frames

FRAMES = render_frames('coffee', 1, 6)


def _teacher(root, learner: Learner) -> Teacher:
    store = StateStore(root, model_signature=learner.signature())
    return Teacher(learner, store, gather_rate=1e6, min_frames=3)


def _lesson(teacher: Teacher, label: str):
    assert teacher.label(label, 6).success
    for image in FRAMES:
        teacher.observe(image)
    return teacher.start_learning()


@pytest.mark.parametrize('name', ['nfs4', 'cifs'])
def test_every_lesson_is_stored_on_network_and_foreign_filesystems(name, tmp_path, monkeypatch,
                                                                   small_config):
    root = tmp_path / 'state'
    sim = SimulatedMount(tmp_path, BEHAVIOURS[name], monkeypatch)
    learner = Learner(small_config())
    teacher = _teacher(root, learner)
    assert teacher.filesystem.fs_type == BEHAVIOURS[name].fs_type
    assert teacher.filesystem.guarantee == 'weaker', teacher.filesystem
    for number, label in enumerate(('mug', 'cup'), start=1):
        out = _lesson(teacher, label)
        assert out.success, (out.message, sim.calls)
        assert out.details['state_version'] == number
    learner.reset()
    restarted = _teacher(root, learner)  # the next start finds the lock file there
    assert [name for _, name in restarted.learner.classes()] == ['mug', 'cup']
    assert _lesson(restarted, 'plate').details['state_version'] == 3
    assert not [n for n in os.listdir(root) if n.startswith('.tmp')]
