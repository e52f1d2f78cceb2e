"""Shared fixtures: loopback-only ROS environments, node processes, a probe node."""

import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ros_harness import NodeProcess, RosProbe  # noqa: E402

from cl_core_ros.loopback import loopback_env  # noqa: E402


@pytest.fixture
def ros_env(tmp_path):
    """Environment for loopback-only DDS with a domain id and log dir of this test's own."""
    return loopback_env(tmp_path / 'ros_log')


@pytest.fixture
def probe(ros_env):
    """A node in this test process, in an isolated context on the test's domain."""
    p = RosProbe(ros_env)
    yield p
    p.close()


@pytest.fixture
def start_node(ros_env, tmp_path):
    """Start node executables in subprocesses; all are stopped when the test ends."""
    started: list[NodeProcess] = []

    def _start(name: str, ros_args: list[str] | None = None, args: list[str] | None = None,
               env: dict[str, str] | None = None) -> NodeProcess:
        proc = NodeProcess.executable(name, env or ros_env, tmp_path, ros_args, args)
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        proc.stop()


@pytest.fixture
def mount_tmpfs(tmp_path):
    """Mount real small filesystems (``mount_tmpfs('4m')``) to fill up; skip where not allowed."""
    mounted: list[Path] = []

    def _mount(size: str) -> Path:
        point = tmp_path / f'tmpfs{len(mounted)}'
        point.mkdir()
        if os.geteuid() != 0 or shutil.which('mount') is None:
            pytest.skip('mounting a tmpfs needs root and mount(8)')
        done = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size},mode=0700', 'tmpfs',
                               str(point)], capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            pytest.skip(f'cannot mount a tmpfs here: {done.stderr.strip()}')
        mounted.append(point)
        return point

    yield _mount
    for point in mounted:
        subprocess.run(['umount', '-l', str(point)], capture_output=True, timeout=30)
