"""Building NICv2-style protocols: counts, first experience, interleaving, seeds, test sessions."""

import pytest

from cl_core_ros.data.core50 import category_of, TEST_SESSIONS
from cl_core_ros.tools.protocol import (
    build_protocol,
    CATEGORY_NAMES,
    class_label,
    ProtocolError,
    subsample,
)


def test_full_core50_gives_nicv2_391(full_scan):
    p = build_protocol(scan=full_scan, seed=0)
    assert p.name == 'NICv2-391'
    assert len(p.experiences) == 391 and p.total_experiences == 391
    assert p.test_sessions == TEST_SESSIONS
    assert p.train_sessions == (1, 2, 4, 5, 6, 8, 9, 11)
    assert len(p.class_labels) == 50
    first = p.experiences[0]
    # 10 objects, one per category, all from one training session
    assert len(first.lessons) == 10
    assert {lesson.session for lesson in first.lessons} == {p.first_session}
    assert sorted(lesson.category for lesson in first.lessons) == list(range(10))
    # then one object-session per experience, each training object-session exactly once
    assert all(len(exp.lessons) == 1 for exp in p.experiences[1:])
    keys = [lesson.key for lesson in p.lessons()]
    assert len(keys) == len(set(keys)) == 8 * 50
    assert all(s not in TEST_SESSIONS for s, _ in keys)
    # the test set is every frame of the test sessions, never a training session
    assert {f.session for f in p.test_frames} == set(TEST_SESSIONS)
    assert len(p.test_frames) == 3 * 50 * 3
    assert p.summary()['order'][0] == [[p.first_session, lesson.object]
                                       for lesson in first.lessons]
    assert p.first_session == 1 and [lesson.object for lesson in first.lessons] == list(
        range(1, 51, 5))


def test_the_stream_has_the_official_structure(full_scan):
    p = build_protocol(scan=full_scan, seed=3)
    # batch 0: session s1 of the first object of every category, learned as one batch
    assert p.first_session == 1
    assert [lesson.key for lesson in p.experiences[0].lessons] == [
        (1, o) for o in range(1, 51, 5)]
    introduced = [exp.index for exp in p.experiences[1:] if exp.new_classes]
    assert len(introduced) == 40  # the 40 objects not in the first experience
    # every object's sessions come in session order, so a new object enters through s1
    by_object: dict[int, list[int]] = {}
    for lesson in p.lessons():
        by_object.setdefault(lesson.object, []).append(lesson.session)
    assert all(sessions == sorted(sessions) for sessions in by_object.values())
    for exp in p.experiences[1:]:
        for lesson in exp.lessons:
            assert (lesson.session == 1) == bool(exp.new_classes)
    # new classes arrive at irregular positions, and elsewhere for another seed
    gaps = {b - a for a, b in zip(introduced, introduced[1:])}
    assert len(gaps) > 5
    other = build_protocol(scan=full_scan, seed=4)
    assert introduced != [exp.index for exp in other.experiences[1:] if exp.new_classes]
    assert sum(1 for exp in p.experiences[1:] if not exp.new_classes) == 350


@pytest.mark.parametrize('scenario, batches, per_batch', [('nicv2_196', 196, 2),
                                                           ('nicv2_79', 79, 5)])
def test_nicv2_196_and_79_group_object_sessions(full_scan, scenario, batches, per_batch):
    p = build_protocol(scan=full_scan, seed=0, scenario=scenario)
    assert p.name == f'NICv2-{batches}' and len(p.experiences) == batches
    assert len(p.experiences[0].lessons) == 10
    assert [len(exp.lessons) for exp in p.experiences[1:]] == [per_batch] * (batches - 1)
    assert len({lesson.key for lesson in p.lessons()}) == 400
    assert p.summary()['structure'].startswith('official structure')


def test_same_seed_same_protocol_other_seed_other_order(full_scan):
    a = build_protocol(scan=full_scan, seed=7)
    b = build_protocol(scan=full_scan, seed=7)
    c = build_protocol(scan=full_scan, seed=8)
    assert a.order() == b.order() and a.first_session == b.first_session
    assert a.order() != c.order()


def test_truncation_keeps_a_prefix_of_the_stream(full_scan):
    full = build_protocol(scan=full_scan, seed=1)
    short = build_protocol(scan=full_scan, seed=1, experiences=20)
    assert short.name == 'NICv2-391[:20]'
    assert short.order() == full.order()[:20]
    assert short.test_frames == full.test_frames


def test_category_classes_are_ten_way(full_scan):
    p = build_protocol(scan=full_scan, seed=2, classes='category')
    assert p.class_labels == CATEGORY_NAMES
    assert len(p.experiences) == 391
    # one object per category in the first experience: every later lesson is a known class
    assert set(p.experiences[0].new_classes) == set(CATEGORY_NAMES)
    assert all(not exp.new_classes for exp in p.experiences[1:])
    assert {lesson.label for lesson in p.lessons()} == set(CATEGORY_NAMES)


def test_first_experience_size_is_configurable(full_scan):
    p = build_protocol(scan=full_scan, seed=4, first_objects=15)
    first = p.experiences[0]
    assert len(first.lessons) == 15
    assert {lesson.category for lesson in first.lessons} == set(range(10))  # all categories
    assert len(p.experiences) == 1 + 400 - 15


def test_small_folder(core50_small):
    p = build_protocol(core50_small, seed=0, first_objects=2)
    assert p.train_sessions == (1, 2, 4) and p.test_sessions == (3,)
    assert p.objects == (1, 2, 6, 11)
    first = p.experiences[0]
    assert len(first.lessons) == 2
    assert len({lesson.category for lesson in first.lessons}) == 2  # one per category first
    assert len(p.experiences) == 1 + 3 * 4 - 2
    assert all(len(lesson.frames) == 12 for lesson in p.lessons())
    assert all(f.session == 3 for f in p.test_frames) and len(p.test_frames) == 4 * 12
    assert {lesson.session for lesson in p.lessons()} <= {1, 2, 4}


def test_frames_are_evenly_subsampled(core50_small):
    p = build_protocol(core50_small, seed=0, frames_per_experience=4, test_frames_per_session=3)
    for lesson in p.lessons():
        assert [f.frame for f in lesson.frames] == [0, 3, 6, 9]
        assert lesson.available == 12
    assert sorted({f.frame for f in p.test_frames}) == [0, 4, 8]
    assert subsample(p.lessons()[0].frames, None) == p.lessons()[0].frames


def test_test_sessions_can_be_chosen(core50_small):
    p = build_protocol(core50_small, seed=0, test_sessions=[4])
    assert p.test_sessions == (4,) and p.train_sessions == (1, 2, 3)
    assert all(lesson.session != 4 for lesson in p.lessons())


def test_class_labels():
    assert class_label(7) == 'o07'
    assert class_label(11, 'category') == 'scissors' == CATEGORY_NAMES[category_of(11)]


@pytest.mark.parametrize('sessions, message', [((1, 2), 'no test session'),
                                               ((3, 7), 'no training session')])
def test_folders_without_test_or_training_sessions_are_refused(make_scan, sessions, message):
    with pytest.raises(ProtocolError, match=message):
        build_protocol(scan=make_scan(sessions=sessions, objects=(1, 2)))


@pytest.mark.parametrize('kwargs', [{'classes': 'instance'}, {'first_objects': 0},
                                    {'experiences': 0}, {'frames_per_experience': -1},
                                    {'first_session': 3}, {'scenario': 'nicv2_100'}])
def test_bad_options_are_refused(full_scan, kwargs):
    with pytest.raises(ProtocolError):
        build_protocol(scan=full_scan, **kwargs)
