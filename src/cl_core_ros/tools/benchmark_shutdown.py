"""How long each node executable takes to stop on SIGINT, a second SIGINT and SIGTERM.

Starts every executable (``camera_node``, ``learner_node``, ``consolidation_node``,
``bringup``) ``--runs`` times on loopback-only DDS, waits until it has started, sends the
signal(s) to its process group (as a terminal's Ctrl-C does) and prints, per executable and
signal, the median and the largest seconds from the first signal to the process's exit, and
its exit statuses. No frames flow here; ``test/nodes/test_shutdown.py`` checks the same with
frames flowing and during a consolidation.

Usage: ``python -m cl_core_ros.tools.benchmark_shutdown --out out/bench_shutdown --runs 3``
"""

import argparse
import os
from pathlib import Path
import signal
import statistics
import subprocess
import tempfile
import time

from cl_core_ros.loopback import loopback_env
from cl_core_ros.tools.node_process import NodeProcess
from cl_core_ros.tools.ros_calls import wait_until

STARTED = {'camera_node': '[camera]: camera:', 'learner_node': '[learner]: learner:',
           'consolidation_node': '[consolidation]: consolidation:',
           'bringup': '[learner]: learner:'}
SIGNALS = {'SIGINT': [signal.SIGINT], 'SIGINT twice': [signal.SIGINT, signal.SIGINT],
           'SIGTERM': [signal.SIGTERM]}


def stop_seconds(proc: NodeProcess, signals: list[int], timeout: float = 30.0) -> float:
    """Send ``signals`` to ``proc``'s group; return seconds from the first to its exit."""
    start = time.monotonic()
    for i, sig in enumerate(signals):
        os.killpg(proc.pid, sig)
        if i + 1 < len(signals):  # the next one once the first was handled
            wait_until(lambda: not proc.alive() or 'received: stopping' in proc.output(),
                       timeout, 'the stop message', interval=0.005)
    try:
        proc.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
    return time.monotonic() - start


def wait_started(proc: NodeProcess, marker: str, timeout: float = 300.0) -> None:
    """Wait until ``proc`` printed ``marker`` (its start-up line) or exited."""
    wait_until(lambda: marker in proc.output() or not proc.alive(), timeout, marker)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=None, help='Directory for logs (default: temporary).')
    parser.add_argument('--runs', type=int, default=3, help='Starts per executable and signal.')
    parser.add_argument('--executables', default=','.join(STARTED),
                        help='Comma-separated subset.')
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix='cl_core_shutdown_'))
    out.mkdir(parents=True, exist_ok=True)
    print(f'{"executable":<20}{"signal":<15}{"median s":>9}{"max s":>8}  exit statuses')
    for name in [n.strip() for n in args.executables.split(',') if n.strip()]:
        for label, signals in SIGNALS.items():
            seconds, statuses = [], []
            for run in range(args.runs):
                env = loopback_env(out / 'ros_log')
                extra = ([f'state_dir:={out / "state"}'] if name == 'bringup' else [])
                ros_args = (['-p', f'state_dir:={out / "state"}'] if name == 'learner_node'
                            else None)
                proc = NodeProcess.executable(name, env, out / f'{name}-{run}', ros_args, extra)
                try:
                    wait_started(proc, STARTED[name])
                    seconds.append(stop_seconds(proc, signals))
                    statuses.append(proc.proc.returncode)
                finally:
                    proc.stop()
            print(f'{name:<20}{label:<15}{statistics.median(seconds):>9.2f}'
                  f'{max(seconds):>8.2f}  {sorted(set(statuses))}', flush=True)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
