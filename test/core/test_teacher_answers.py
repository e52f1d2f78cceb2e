"""What the teacher answers when a call fails: the user's words intact, nothing changed."""

from pathlib import Path
import shutil

from cl_core_ros.core.learner import Learner
from cl_core_ros.core.state_store import StateStore
from cl_core_ros.core.teacher import Teacher
from cl_core_ros.data.photos import render_frames

FRAMES = render_frames('chelsea', 1, 6)


def _taught(root: Path, config) -> Teacher:
    learner = Learner(config)
    teacher = Teacher(learner, StateStore(root, model_signature=learner.signature()),
                      gather_rate=1e6, min_frames=3)
    assert teacher.label('cat', 6).success
    for image in FRAMES:
        teacher.observe(image)
    assert teacher.start_learning().success
    return teacher


def test_unknown_labels_are_quoted_whole(tmp_path, small_config):
    teacher = _taught(tmp_path, small_config())
    assert teacher.forget('teapot').message == "unknown label 'teapot'"
    assert teacher.rename('teapot', 'pot').message == "unknown label 'teapot'"
    assert teacher.rename("it's", 'pot').message == 'unknown label "it\'s"'


def test_a_failed_rollback_changes_neither_model_nor_store(tmp_path, small_config):
    teacher = _taught(tmp_path, small_config())
    model, state = teacher.learner.model_version, teacher.status().state_version
    out = teacher.rollback(99)
    assert not out.success and 'does not exist' in out.message
    assert teacher.learner.model_version == model
    assert teacher.status().state_version == state == teacher.store.current_version()

    # A damaged earlier version: refused by the store, nothing changes either.
    assert teacher.rename('cat', 'kitten').success
    model, state = teacher.learner.model_version, teacher.status().state_version
    first = tmp_path / 'v000001'
    for part in first.iterdir():
        if part.suffix == '.safetensors':
            part.write_bytes(part.read_bytes()[:-10] + b'0123456789')
    out = teacher.rollback(1)
    assert not out.success and 'invalid' in out.message, out.message
    assert teacher.learner.model_version == model
    assert teacher.status().state_version == state == teacher.store.current_version()
    assert [n for _, n in teacher.learner.labels.items()] == ['kitten']


def test_a_rollback_the_learner_cannot_load_is_undone(tmp_path, small_config, monkeypatch):
    """The store accepts the rollback but the learner refuses the state (simulated)."""
    teacher = _taught(tmp_path, small_config())
    assert teacher.rename('cat', 'kitten').success
    model = teacher.learner.model_version

    def refuse(state):
        raise ValueError('inconsistent state')
    monkeypatch.setattr(teacher.learner, 'load_state_dict', refuse)
    out = teacher.rollback(1)
    assert not out.success and 'inconsistent state' in out.message
    assert teacher.learner.model_version == model
    versions = teacher.store.list_versions()
    assert [v.change for v in versions][-2:] == ['rollback to v000001',
                                                 'undo rollback to version 1']
    assert teacher.store.load_latest().state['labels'] == teacher.learner.labels.state_dict()


def test_a_failed_save_leaves_the_model_version(mount_tmpfs, small_config):
    disk = mount_tmpfs('48m')
    teacher = _taught(disk / 'state', small_config())
    model = teacher.learner.model_version
    filler = disk / 'filler'
    filler.write_bytes(b'\0' * (shutil.disk_usage(disk).free - 256 * 1024))
    out = teacher.save()
    assert not out.success and 'could not store' in out.message
    assert teacher.learner.model_version == model
    filler.unlink()
    assert teacher.save().success and teacher.learner.model_version == model
