"""``state_cli export|import``: lesson packs between state directories, in real subprocesses."""

import pytest

from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.learner import Learner
from cl_core_ros.core.lesson_pack import TENSOR_FILE
from cl_core_ros.core.state_store import StateStore
from cl_core_ros.core.teacher import Teacher
from cl_core_ros.data.photos import render_frames

pytestmark = pytest.mark.slow

CLI = ['-m', 'cl_core_ros.tools.state_cli']
CONFIG = dict(fast_buffer_size=40, deep_buffer_size=40)


def _taught(root, names) -> None:
    learner = Learner(LearnerConfig(**CONFIG))
    teacher = Teacher(learner, StateStore(root, model_signature=learner.signature()))
    for name in names:
        assert teacher.label(name, 8).success
        for i, image in enumerate(render_frames(name, 0, 8)):
            assert teacher.offer_frame(image, now=1e6 + i)  # a second apart: each is taken
        assert teacher.start_learning().success


def _learner(root) -> Learner:
    learner = Learner(LearnerConfig(**CONFIG))
    learner.load_state_dict(StateStore(root).load_latest().state)
    return learner


def test_export_then_import_into_another_robot_and_roll_back(tmp_path, run_python):
    robot_a, robot_b = tmp_path / 'a', tmp_path / 'b'
    _taught(robot_a, ['chelsea', 'coffee'])
    _taught(robot_b, ['rocket'])
    out = run_python([*CLI, '--state-dir', str(robot_a), 'export', '--out',
                      str(tmp_path / 'pack'), '--origin', '/robot_a/learner'], timeout=180,
                     check=True).stdout
    assert "exported 'chelsea', 'coffee' to" in out and 'pack_sha256' in out
    out = run_python([*CLI, '--state-dir', str(robot_b), 'import', str(tmp_path / 'pack')],
                     timeout=180, check=True).stdout
    assert "imported 'chelsea', 'coffee' from /robot_a/learner" in out
    latest = StateStore(robot_b).load_latest().info
    assert latest.version == 2 and latest.classes == ('rocket', 'chelsea', 'coffee')
    learner = _learner(robot_b)
    origins = {learner.labels.name_of(c): o for c, o in learner.class_origins().items()}
    assert origins == {'rocket': [''], 'chelsea': ['/robot_a/learner'],
                       'coffee': ['/robot_a/learner']}
    run_python([*CLI, '--state-dir', str(robot_b), 'rollback', '1'], check=True)
    assert [n for _, n in _learner(robot_b).labels.items()] == ['rocket']

    # refused with reasons, nothing stored: a label clash under 'refuse', a tampered pack
    _taught(robot_b, ['chelsea'])
    versions = len(StateStore(robot_b).list_versions())
    clash = run_python([*CLI, '--state-dir', str(robot_b), 'import', str(tmp_path / 'pack')],
                       timeout=180)
    assert clash.returncode == 1 and "label clash: 'chelsea'" in clash.stderr, clash.stderr
    data = bytearray((tmp_path / 'pack' / TENSOR_FILE).read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / 'pack' / TENSOR_FILE).write_bytes(bytes(data))
    bad = run_python([*CLI, '--state-dir', str(robot_b), 'import', str(tmp_path / 'pack'),
                      '--on-clash', 'merge'], timeout=180)
    assert bad.returncode == 1 and 'tampered' in bad.stderr, bad.stderr
    assert len(StateStore(robot_b).list_versions()) == versions


def test_import_into_an_empty_state_directory_takes_the_packs_backbone(tmp_path, run_python):
    _taught(tmp_path / 'a', ['coffee'])
    run_python([*CLI, '--state-dir', str(tmp_path / 'a'), 'export', 'coffee', '--out',
                str(tmp_path / 'pack')], timeout=180, check=True)
    run_python([*CLI, '--state-dir', str(tmp_path / 'new'), 'import', str(tmp_path / 'pack')],
               timeout=180, check=True)
    assert StateStore(tmp_path / 'new').load_latest().info.classes == ('coffee',)
    missing = run_python([*CLI, '--state-dir', str(tmp_path / 'a'), 'export', 'zebra',
                          '--out', str(tmp_path / 'p2')], timeout=180)
    assert missing.returncode == 1 and 'unknown label' in missing.stderr, missing.stderr
