"""Kill -9 at random moments while committing: acknowledged versions survive, none is half-made.

A writer process commits learner-sized states (about 3.5 MB) in a loop and acknowledges each
version only after commit() returned. The test SIGKILLs it at random moments, dozens of times,
and after each kill checks, as a restarted node would: every version directory that exists
verifies in full; the newest acknowledged version (or a newer one) loads, with exactly the
content committed for it.
"""

import os
from pathlib import Path
import random
import select
import signal
import subprocess
import sys
import time

import torch

from cl_core_ros.core.state_store import StateStore

HERE = Path(__file__).resolve().parent
SRC_DIR = HERE.parents[1] / 'src'
KILLS = 40
TIME_BUDGET_S = 60.0

sys.path.insert(0, str(HERE))
from state_crash_worker import base_tensors, KEEP, state_for  # noqa: E402


class _Lines:
    """Line reader on a pipe with a deadline (never blocks forever)."""

    def __init__(self, stream) -> None:
        self.fd = stream.fileno()
        self.buffer = b''

    def read(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while b'\n' not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, 'the crash worker stopped answering'
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                assert chunk, 'the crash worker exited'
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b'\n', 1)
        return line.decode()


def _check_after_kill(root: Path, last_ack: tuple[int, int], base) -> tuple[int, int, list]:
    """Verify the store as a restarted node would; return (version, step) loaded and problems."""
    report = StateStore(root, keep=KEEP).verify()
    for info in report.versions:
        assert info.valid, f'half-written version: {info.problem}'
    for problem in report.problems:
        assert 'leftover of an interrupted' in problem or 'newer than CURRENT' in problem, problem

    result = StateStore(root, keep=KEEP).load_latest()
    if not result.found:  # killed before the first commit was acknowledged: nothing to keep
        assert last_ack[0] == 0, f'acknowledged v{last_ack[0]} lost: {result.problems}'
        return 0, -1, result.problems
    version, step = result.info.version, result.state['step']
    ack_version, ack_step = last_ack
    assert version >= ack_version, f'acknowledged v{ack_version} lost, loaded v{version}'
    assert step >= ack_step
    if version == ack_version:
        assert step == ack_step
    expected = state_for(step, base)
    assert torch.equal(result.state['head']['weight'], expected['head']['weight'])
    assert torch.equal(result.state['head']['counts'], expected['head']['counts'])
    assert torch.equal(result.state['replay']['codes'], expected['replay']['codes'])
    assert result.state['labels'] == expected['labels'] == list(result.info.classes)
    assert StateStore(root, keep=KEEP).verify().ok  # load_latest cleaned every leftover
    return version, step, result.problems


def test_sigkill_during_commits_never_loses_an_acknowledged_version(tmp_path):
    root = tmp_path / 'state'
    seed = random.randrange(2 ** 32)
    rng = random.Random(seed)
    base = base_tensors()
    env = {**os.environ, 'PYTHONPATH': str(SRC_DIR)}
    worker = subprocess.Popen([sys.executable, str(HERE / 'state_crash_worker.py'), str(root)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    lines = _Lines(worker.stdout)
    started = time.monotonic()
    kills, acks, repaired, last_ack, next_step = 0, 0, 0, (0, -1), 0
    try:
        assert lines.read(60) == 'ready'
        while kills < KILLS:
            worker.stdin.write(f'go {next_step}\n'.encode())
            worker.stdin.flush()
            kind, pid = lines.read().split()
            assert kind == 'pid'
            time.sleep(rng.uniform(0.0, 0.25))
            os.kill(int(pid), signal.SIGKILL)
            kills += 1
            worker.stdin.write(f'reap {pid}\n'.encode())
            worker.stdin.flush()
            while (line := lines.read()) != f'dead {pid}':
                kind, version, step = line.split()
                assert kind == 'ack'
                assert (int(version), int(step)) > last_ack
                last_ack = (int(version), int(step))
                acks += 1
            version, step, problems = _check_after_kill(root, last_ack, base)
            repaired += any('interrupted' in p or 'newer than CURRENT' in p for p in problems)
            next_step = max(step, last_ack[1]) + 1
            assert time.monotonic() - started < TIME_BUDGET_S * 2, 'crash test far too slow'
        worker.stdin.write(b'quit\n')
        worker.stdin.flush()
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    elapsed = time.monotonic() - started
    print(f'crash test (seed {seed}): {kills} kills, {acks} acknowledged commits, {repaired} '
          f'interrupted commits repaired, {elapsed:.1f} s')
    assert acks >= 10, 'the writer hardly committed: kills came too early'
    assert repaired >= 1, 'no kill landed inside a commit'
    assert len(list(root.glob('v*'))) <= KEEP + 1
