"""The loopback environment: domain ids held by one process are never handed to another."""

import subprocess
import sys

from cl_core_ros import loopback


def test_a_domain_held_here_is_never_picked_by_another_process(tmp_path, monkeypatch):
    monkeypatch.setenv('CL_CORE_ROS_DOMAIN_LOCKS', str(tmp_path))
    held = {loopback.pick_domain_id() for _ in range(4)}
    assert len(held) == 4
    code = ('from cl_core_ros.loopback import pick_domain_id\n'
            'print(" ".join(str(pick_domain_id()) for _ in range(4)))')
    seen: set[int] = set()
    for _ in range(12):
        out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                             timeout=60, check=True).stdout.split()
        picked = {int(x) for x in out}
        assert len(picked) == 4 and picked <= set(loopback.DOMAIN_IDS)
        seen |= picked
    assert not held & seen


def test_env_sets_every_loopback_variable(tmp_path, monkeypatch):
    monkeypatch.setenv('CL_CORE_ROS_DOMAIN_LOCKS', str(tmp_path / 'locks'))
    env = loopback.loopback_env(tmp_path / 'log', base={})
    assert env['ROS_AUTOMATIC_DISCOVERY_RANGE'] == 'LOCALHOST'
    assert int(env['ROS_DOMAIN_ID']) in loopback.DOMAIN_IDS
    assert env['FASTDDS_DEFAULT_PROFILES_FILE'].endswith(loopback.PROFILE_NAME)
    assert (tmp_path / 'log').is_dir()
