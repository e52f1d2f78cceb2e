"""A learner whose state directory cannot store lessons refuses to start, naming the filesystem.

A real read-only mount (a tmpfs remounted read-only; skipped where mounting is not permitted).
"""

import subprocess

import pytest
import torch

from cl_core_ros.core.state_store import StateStore

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_learner_on_a_read_only_mount_refuses_to_start(start_node, mount_tmpfs):
    point = mount_tmpfs('4m')
    state = point / 'state'
    StateStore(state).commit({'w': torch.zeros(3)}, change='taught before', classes=['mug'])
    done = subprocess.run(['mount', '-o', 'remount,ro', str(point)], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f'cannot remount read-only here: {done.stderr.strip()}')
    learner = start_node('learner_node', ['-p', f'state_dir:={state}'])
    learner.proc.wait(timeout=120)
    out = learner.output()
    assert learner.proc.returncode == 3, out[-3000:]
    assert 'cannot use the learner state' in out and f'on tmpfs (tmpfs at {point})' in out
    assert 'EROFS' in out and 'mounted read-only' in out, out[-3000:]
    assert StateStore(state).verify().ok  # what it knew is untouched
