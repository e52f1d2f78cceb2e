"""Shared fixtures: loopback-only ROS environments, node processes, a probe node."""

from pathlib import Path
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
