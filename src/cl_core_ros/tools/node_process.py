"""Node executables in subprocesses: started in their own process group, logged, always stopped.

Used by the demo, the benchmarks, the protocol runner and the tests. A process is stopped with
SIGINT (a clean rclpy shutdown) and SIGKILLed if it does not exit in time; :meth:`kill` is a
crash as far as the process can tell.
"""

import os
from pathlib import Path
import signal
import subprocess
import sys
import time


def executable_path(name: str) -> Path:
    """Return ``lib/cl_core_ros/<name>`` of the install (colcon prefix or this Python's)."""
    from cl_core_ros.nodes.runtime import share_dir

    candidates = [share_dir().parents[1] / 'lib' / 'cl_core_ros' / name,
                  Path(sys.prefix) / 'lib' / 'cl_core_ros' / name]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f'{name} not found in {[str(c) for c in candidates]}: run '
                            'scripts/setup.sh (or colcon build) first')


class NodeProcess:
    """A command in its own process group, its output in a log file."""

    def __init__(self, cmd: list[str], env: dict[str, str], log_path: Path):
        self.cmd = cmd
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, 'wb')  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    @classmethod
    def executable(cls, name: str, env: dict[str, str], log_dir: Path,
                   ros_args: list[str] | None = None, args: list[str] | None = None):
        """Start the installed executable ``name`` with this Python."""
        cmd = [sys.executable, str(executable_path(name)), *(args or [])]
        if ros_args:
            cmd += ['--ros-args', *ros_args]
        return cls(cmd, env, Path(log_dir) / f'{name}-{time.monotonic_ns()}.log')

    @property
    def pid(self) -> int:
        """Process id."""
        return self.proc.pid

    def output(self) -> str:
        """Return what the process printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def tail(self, chars: int = 3000) -> str:
        """Return the end of the output."""
        return self.output()[-chars:]

    def alive(self) -> bool:
        """Return True while the process runs."""
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, as far as the process can tell)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGINT, then SIGKILL after ``timeout``; return the exit code."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        if not self._log.closed:
            self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
