"""``state_cli export|import``: lesson packs between state directories."""

import pytest

from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.learner import Learner
from cl_core_ros.core.lesson_pack import TENSOR_FILE
from cl_core_ros.core.state_store import StateStore
from cl_core_ros.core.teacher import Teacher
from cl_core_ros.data.photos import render_frames
from cl_core_ros.tools.state_cli import main

pytestmark = pytest.mark.slow

CLI = ['-m', 'cl_core_ros.tools.state_cli']


@pytest.fixture(scope='module')
def learner():
    """One learner, reset for every robot (the CLI builds its own)."""
    return Learner(LearnerConfig())


def _taught(learner, root, names) -> None:
    learner.reset()
    teacher = Teacher(learner, StateStore(root, model_signature=learner.signature()))
    for name in names:
        assert teacher.label(name, 6).success
        for i, image in enumerate(render_frames(name, 0, 6)):
            assert teacher.offer_frame(image, now=1e6 + i)  # a second apart: each is taken
        assert teacher.start_learning().success


def _classes(learner, root) -> dict[str, list[str]]:
    learner.load_state_dict(StateStore(root).load_latest().state)
    return {learner.labels.name_of(c): o for c, o in learner.class_origins().items()}


def test_export_then_import_into_another_robot_and_roll_back(tmp_path, run_python, learner,
                                                            capsys):
    robot_a, robot_b, pack = tmp_path / 'a', tmp_path / 'b', tmp_path / 'pack'
    _taught(learner, robot_a, ['chelsea', 'coffee'])
    _taught(learner, robot_b, ['rocket'])
    out = run_python([*CLI, '--state-dir', str(robot_a), 'export', '--out', str(pack),
                      '--origin', '/robot_a/learner'], timeout=300, check=True).stdout
    assert "exported 'chelsea', 'coffee' to" in out and 'pack_sha256' in out
    assert main(['--state-dir', str(robot_b), 'import', str(pack)]) == 0
    assert "imported 'chelsea', 'coffee' from /robot_a/learner" in capsys.readouterr().out
    latest = StateStore(robot_b).load_latest().info
    assert latest.version == 2 and latest.classes == ('rocket', 'chelsea', 'coffee')
    assert _classes(learner, robot_b) == {'rocket': [''], 'chelsea': ['/robot_a/learner'],
                                          'coffee': ['/robot_a/learner']}
    assert main(['--state-dir', str(robot_b), 'rollback', '1']) == 0
    assert _classes(learner, robot_b) == {'rocket': ['']}

    # refused with reasons, nothing stored: a label clash under 'refuse', a tampered pack
    assert main(['--state-dir', str(robot_b), 'import', str(pack), '--on-clash', 'rename']) == 0
    assert 'chelsea' in _classes(learner, robot_b)
    versions = len(StateStore(robot_b).list_versions())
    capsys.readouterr()
    assert main(['--state-dir', str(robot_b), 'import', str(pack)]) == 0
    assert 'nothing new' in capsys.readouterr().out  # the same pack again: a duplicate
    _taught(learner, tmp_path / 'c', ['chelsea'])
    assert main(['--state-dir', str(tmp_path / 'c'), 'import', str(pack)]) == 1
    assert "label clash: 'chelsea'" in capsys.readouterr().err
    data = bytearray((pack / TENSOR_FILE).read_bytes())
    data[-10] ^= 0xFF
    (pack / TENSOR_FILE).write_bytes(bytes(data))
    assert main(['--state-dir', str(robot_b), 'import', str(pack), '--on-clash', 'merge']) == 1
    assert 'tampered' in capsys.readouterr().err
    assert len(StateStore(robot_b).list_versions()) == versions


def test_import_into_an_empty_state_directory_takes_the_packs_backbone(tmp_path, learner,
                                                                      capsys):
    _taught(learner, tmp_path / 'a', ['coffee'])
    assert main(['--state-dir', str(tmp_path / 'a'), 'export', 'coffee', '--out',
                 str(tmp_path / 'pack')]) == 0
    assert main(['--state-dir', str(tmp_path / 'new'), 'import', str(tmp_path / 'pack')]) == 0
    assert StateStore(tmp_path / 'new').load_latest().info.classes == ('coffee',)
    assert main(['--state-dir', str(tmp_path / 'a'), 'export', 'zebra', '--out',
                 str(tmp_path / 'p2')]) == 1
    assert 'unknown label' in capsys.readouterr().err
