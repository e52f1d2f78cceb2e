"""SIGKILL a real learner at random moments while it learns and commits, 30+ times.

After every kill, a restarted learner (a fresh process loading the store) must find the newest
acknowledged lesson, every version directory must verify, and the state must load into a
Learner. See learner_crash_worker.py for the worker protocol.
"""

import os
from pathlib import Path
import random
import select
import signal
import subprocess
import sys
import time

import pytest

from cl_core_ros.core.state_store import StateStore

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
KILLS = 30


class _Lines:
    def __init__(self, stream):
        self.fd, self.buffer = stream.fileno(), b''

    def read(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while b'\n' not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, 'the learner worker stopped answering'
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 65536)
                assert chunk, 'the learner worker exited'
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b'\n', 1)
        return line.decode()


def _start_lines(lines):
    out = []
    for _ in range(2):
        kind, *values = lines.read().split()
        assert kind in ('pid', 'loaded'), kind
        out.append((kind, values))
    return out


def test_sigkill_while_learning_never_loses_an_acknowledged_lesson(tmp_path):
    root = tmp_path / 'state'
    rng = random.Random(os.getpid())
    worker = subprocess.Popen([sys.executable, str(HERE / 'learner_crash_worker.py'),
                               str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    lines = _Lines(worker.stdout)
    acked_version, acked_labels, kills, acks, during = 0, set(), 0, 0, 0
    try:
        assert lines.read(180) == 'ready'
        while kills < KILLS:
            worker.stdin.write(b'go\n')
            worker.stdin.flush()
            got = dict(_start_lines(lines))  # the child may speak before its parent
            pid, (version, classes) = got['pid'][0], got['loaded']
            # The restarted learner found the newest acknowledged lesson.
            assert int(version) >= acked_version
            time.sleep(rng.uniform(0.0, 1.2))
            os.kill(int(pid), signal.SIGKILL)
            kills += 1
            worker.stdin.write(f'reap {pid}\n'.encode())
            worker.stdin.flush()
            before = acks
            while (line := lines.read()) != f'dead {pid}':
                kind, version, label = line.split()
                assert kind == 'ack' and int(version) > acked_version
                acked_version = int(version)
                acked_labels.add(label)
                acks += 1
            during += acks == before
            report = StateStore(root).verify()
            assert all(info.valid for info in report.versions), report.problems
            if acked_version:
                result = StateStore(root).load_latest()
                assert result.info.version >= acked_version, result.problems
                assert acked_labels <= set(result.info.classes)
        worker.stdin.write(b'go\n')
        worker.stdin.flush()
        version, classes = dict(_start_lines(lines))['loaded']
        assert int(version) >= acked_version and int(classes) == len(acked_labels)
    finally:
        worker.kill()
        worker.wait()
    print(f'learner crash test: {kills} kills, {acks} acknowledged lessons')
    assert acks >= 10, 'the learner hardly learned anything between kills'
