"""SIGINT and SIGTERM as a stop request, from the first line of an executable to its exit.

Imports nothing heavy (no rclpy, no torch), so that the executables take the stop signals over
before they spend seconds importing: a Ctrl-C or ``ros2 launch`` shutdown while a node is still
loading then ends it with exit status 0 and one line, not a ``KeyboardInterrupt`` traceback
(SIGINT) or death by signal (SIGTERM).

Nothing happens inside the Python signal handler. It runs in the main thread between any two
bytecodes, also inside locks that the main thread holds, so a handler that takes a lock can
deadlock the process (seen: a second SIGINT right after the first one's "stopping" line hung
the process for good). Instead the interpreter's C-level handler writes the signal number to a
pipe (:func:`signal.set_wakeup_fd`) and a thread reads it and acts. That thread also sees a
signal while the main thread is busy in native code.
"""

import os
import signal
import threading

SHUTDOWN_GRACE_S = 3.0
"""Seconds from the first stop request until the process exits even if shutdown hangs."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_process_request = None  # the StopRequest installed in this process, if any


def say(text: str) -> None:
    """Write one line to stderr, unbuffered and without locks."""
    os.write(2, f'[cl_core_ros] {text}\n'.encode(errors='replace'))


def _noted(_signum, _frame) -> None:
    """Do nothing: the Python-level handler of a stop signal (the wakeup pipe carries it)."""


class StopRequest:
    """The process's stop request: set by the first SIGINT/SIGTERM, or by the node itself.

    Until :meth:`started` is called, a stop signal ends the process at once with status 0:
    nothing has been built yet that a stop could lose. From then on it sets the request, which
    the main thread waits on (:meth:`wait`), and from the first request on a watchdog thread
    ends the process with exit status ``hard_exit_status`` unless :meth:`finished` is called
    within ``grace_s`` seconds. A signal after the first is reported and otherwise ignored
    (``ros2 launch`` and a terminal may both send one).
    """

    def __init__(self, grace_s: float = SHUTDOWN_GRACE_S, hard_exit_status: int = 0):
        self.grace_s = grace_s
        self.hard_exit_status = hard_exit_status
        self.reason = ''
        self._starting = True
        self._requested = threading.Event()
        self._finished = threading.Event()
        self._lock = threading.Lock()

    def install(self) -> None:
        """Take SIGINT and SIGTERM over from now on (once per process).

        Raises:
            ValueError: when called from a thread other than the main thread.
        """
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # the C handler must never block on a full pipe
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            signal.signal(sig, _noted)
        threading.Thread(target=self._read_signals, args=(read_fd,), name='stop-signals',
                         daemon=True).start()

    def started(self) -> None:
        """Leave start-up: from now on a stop signal is a request, handled by the main thread."""
        with self._lock:
            self._starting = False

    def _read_signals(self, read_fd: int) -> None:
        """Turn each stop signal written to the wakeup pipe into a stop request."""
        while True:
            try:
                numbers = os.read(read_fd, 64)  # retried by Python after EINTR (PEP 475)
            except OSError:
                return
            if not numbers:
                return
            for number in numbers:
                if number in STOP_SIGNALS:
                    self._on_signal(number)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        with self._lock:  # held through the exit: started() cannot slip in between
            if self._starting:
                say(f'{name} received while starting: exiting')
                os._exit(0)
        if self.requested:
            say(f'{name} received again: already stopping')
            return
        say(f'{name} received: stopping')
        self.request(f'{name} received')

    def request(self, reason: str) -> None:
        """Ask for a stop (idempotent: later requests keep the first reason)."""
        with self._lock:
            if self._requested.is_set():
                return
            self.reason = reason
            self._requested.set()
        threading.Thread(target=self._watchdog, name='shutdown-watchdog', daemon=True).start()

    @property
    def requested(self) -> bool:
        """True once a stop was asked for."""
        return self._requested.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is asked for; return :attr:`requested`."""
        return self._requested.wait(timeout)

    def finished(self) -> None:
        """Shutdown completed: the watchdog has nothing to do."""
        self._finished.set()

    def _watchdog(self) -> None:
        if self._finished.wait(self.grace_s):
            return
        say(f'shutdown did not finish within {self.grace_s:.0f} s ({self.reason}); '
             'exiting now')
        os._exit(self.hard_exit_status)


def process_stop_request(grace_s: float = SHUTDOWN_GRACE_S) -> StopRequest:
    """Return this process's :class:`StopRequest`, installing it on the first call.

    The executables call it on their first line, before their slow imports; ``spin_nodes``
    calls it again (main thread only), which sets ``grace_s``.

    Raises:
        ValueError: when the first call comes from a thread other than the main thread.
    """
    global _process_request
    if _process_request is None:
        request = StopRequest(grace_s)
        request.install()
        _process_request = request
    _process_request.grace_s = grace_s
    return _process_request
