"""The teaching workflow without ROS: gather, learn, store, refuse wrong calls, roll back."""

from pathlib import Path
import shutil
import threading

from cl_core_ros.core.learner import Learner
from cl_core_ros.core.state_store import StateStore
from cl_core_ros.core.teacher import Phase, Teacher
from cl_core_ros.data.photos import render_frames

FRAMES = {name: render_frames(name, 1, 6) for name in ('chelsea', 'coffee', 'rocket')}


def _teacher(root: Path, config, **kw) -> Teacher:
    learner = Learner(config)
    store = StateStore(root, model_signature=learner.signature())
    return Teacher(learner, store, gather_rate=1e6, min_frames=3, **kw)


def _teach(teacher: Teacher, label: str, photo: str):
    assert teacher.label(label, 6).success
    for image in FRAMES[photo]:
        teacher.observe(image)
    return teacher.start_learning()


def test_lessons_are_learned_stored_and_loaded_by_a_restarted_teacher(tmp_path, small_config):
    teacher = _teacher(tmp_path, small_config())
    out = teacher.label('cat', 6)
    assert out.success and out.details == {'class_id': 0, 'is_new_class': True}
    assert teacher.status().phase == Phase.GATHERING
    gathered = [teacher.observe(image)[1] for image in FRAMES['chelsea']]
    assert gathered == [True] * 6 and teacher.status().frames_gathered == 6
    assert teacher.observe(FRAMES['chelsea'][0])[1] is False  # target reached
    out = teacher.start_learning()
    assert out.success and out.details['frames_used'] == 6 and out.details['state_version'] == 1
    assert _teach(teacher, 'mug', 'coffee').details['state_version'] == 2
    assert teacher.status().phase == Phase.IDLE and teacher.status().pending_experiences == 2

    restarted = _teacher(tmp_path, small_config())
    assert restarted.status().state_version == 2 and restarted.status().num_classes == 2
    frame = restarted.learner.preprocess(FRAMES['coffee'][0])[None]
    assert restarted.learner.predict(frame)[0].labels == teacher.learner.predict(frame)[0].labels
    assert restarted.learner.predict(frame)[0].labels[0] == 'mug'


def test_wrong_calls_get_clear_answers(tmp_path, small_config):
    teacher = _teacher(tmp_path, small_config())
    assert 'nothing gathered' in teacher.start_learning().message
    assert 'invalid label' in teacher.label('\x00bad', 5).message
    assert 'num_frames' in teacher.label('ok', 5000).message
    assert teacher.label('mug', 6).success
    assert 'already gathering' in teacher.label('cup', 6).message
    teacher.observe(FRAMES['coffee'][0])
    out = teacher.start_learning()
    assert not out.success and 'only 1 frames' in out.message
    assert teacher.status().phase == Phase.GATHERING  # still gathering: nothing was lost
    assert not teacher.forget('cup').success
    assert 'nothing to consolidate' in teacher.consolidate().message
    assert 'busy (gathering)' in teacher.rollback().message
    assert teacher.cancel_gathering('test').success and teacher.status().phase == Phase.IDLE
    assert 'no earlier version' in teacher.rollback().message


def test_forget_rename_reset_and_rollback_are_each_stored(tmp_path, small_config):
    teacher = _teacher(tmp_path, small_config())
    _teach(teacher, 'cat', 'chelsea')
    _teach(teacher, 'mug', 'coffee')
    assert teacher.rename('mug', 'cup').success
    assert teacher.forget('cat').success
    assert [n for _, n in teacher.learner.labels.items()] == ['cup']
    assert teacher.reset().success and len(teacher.learner.labels) == 0
    out = teacher.rollback()  # back to the version before the reset
    assert out.success, out.message
    assert [n for _, n in teacher.learner.labels.items()] == ['cup']
    changes = [v.change for v in teacher.store.list_versions()]
    assert changes[-3:] == ["forget 'cat'", 'reset', 'rollback to v000004']


def test_a_lesson_interrupts_a_running_consolidation(tmp_path, small_config):
    teacher = _teacher(tmp_path, small_config(deep_epochs=200))
    _teach(teacher, 'cat', 'chelsea')
    result = {}
    worker = threading.Thread(target=lambda: result.update(out=teacher.consolidate()))
    worker.start()
    while teacher.status().phase != Phase.CONSOLIDATING:
        assert worker.is_alive()
    assert teacher.label('mug', 6).success  # teaching has priority
    worker.join(timeout=120)
    assert not result['out'].success and 'interrupted' in result['out'].message
    for image in FRAMES['coffee']:
        teacher.observe(image)
    assert teacher.start_learning().success
    assert teacher.status().pending_experiences == 2


def test_full_disk_fails_the_lesson_and_rolls_the_model_back(mount_tmpfs, small_config):
    small_disk = mount_tmpfs('48m')
    teacher = _teacher(small_disk / 'state', small_config())
    assert _teach(teacher, 'cat', 'chelsea').success
    free = shutil.disk_usage(small_disk).free
    filler = small_disk / 'filler'
    filler.write_bytes(b'\0' * (free - 256 * 1024))
    out = _teach(teacher, 'mug', 'coffee')
    assert not out.success and 'could not store' in out.message and 'ENOSPC' in out.message
    assert [n for _, n in teacher.learner.labels.items()] == ['cat']  # model rolled back
    assert teacher.status().state_version == 1 and teacher.store.verify().ok
    filler.unlink()
    assert _teach(teacher, 'mug', 'coffee').success


def test_labels_added_to_a_batch_are_learned_jointly(tmp_path, small_config):
    teacher = _teacher(tmp_path, small_config())
    assert teacher.label('cat', 6).success
    for image in FRAMES['chelsea'][:2]:
        teacher.observe(image)
    # too few frames of the first label to add a second one yet
    out = teacher.label('mug', 6, add_to_batch=True)
    assert not out.success and 'only 2 frames' in out.message
    teacher.observe(FRAMES['chelsea'][2])
    out = teacher.label('mug', 6, add_to_batch=True)
    assert out.success and 'label 2 of one lesson' in out.message
    assert out.details == {'class_id': 1, 'is_new_class': True}
    for image in FRAMES['coffee']:
        teacher.observe(image)
    assert teacher.label('cat', 3, add_to_batch=True).details['class_id'] == 0
    for image in FRAMES['chelsea'][3:]:
        teacher.observe(image)
    assert teacher.status().frames_gathered == 3 and teacher.status().gathering_label == 'cat'
    out = teacher.start_learning()
    assert out.success and out.details['label'] == 'cat, mug'
    assert out.details['frames_used'] == 3 + 6 + 3 and out.details['state_version'] == 1
    assert [name for _, name in teacher.learner.classes()] == ['cat', 'mug']
    assert teacher.status().phase == Phase.IDLE
    # stored as one lesson: a restarted teacher knows both classes
    restarted = _teacher(tmp_path, small_config())
    assert restarted.status().num_classes == 2 and restarted.status().state_version == 1
    # a cancelled batch drops every label of it
    assert teacher.label('rocket', 6).success
    for image in FRAMES['rocket'][:3]:
        teacher.observe(image)
    assert teacher.label('ship', 6, add_to_batch=True).success
    assert teacher.cancel_gathering('test').success
    assert 'nothing gathered' in teacher.start_learning().message
    assert [name for _, name in teacher.learner.classes()] == ['cat', 'mug']
