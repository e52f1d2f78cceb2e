"""A stop signal never deadlocks the process, wherever the main thread is when it comes.

A Python signal handler runs in the main thread between any two bytecodes, also while that
thread is inside the stop request's own locks (taking the first signal's request, or waiting
in ``Event.wait``). A handler that took those locks itself hung the process for good when a
second SIGINT arrived right after the first one's "stopping" line (seen on a loaded machine:
both lines printed, no exit). Here each process holds one of those locks in the main thread,
sends itself two stop signals and only then lets go: the stop must still be requested once,
the repeated signal reported as such, and the main thread must have come back at once.
"""

import signal
import subprocess
import sys

import pytest

CHILD = """
import os, signal, sys, time
from cl_core_ros.nodes import stop_signals
from cl_core_ros.nodes.stop_signals import StopRequest

said = []
stop_signals.say = lambda text: (said.append(text), print(text, file=sys.stderr, flush=True))
stop = StopRequest(grace_s=30.0)
stop.install()
stop.started()
held = {'request': stop._lock, 'wait': stop._requested._cond}[sys.argv[1]]
with held:
    for number in sys.argv[2:]:
        os.kill(os.getpid(), int(number))
        time.sleep(0.1)  # a second signal, not one merged with the first
    print('main thread came back', flush=True)
    time.sleep(0.3)
print('requested', stop.wait(10.0), stop.reason, flush=True)
deadline = time.monotonic() + 10.0  # the repeated signal is read after the first request
while len(said) < len(sys.argv) - 2 and time.monotonic() < deadline:
    time.sleep(0.01)
stop.finished()
"""


@pytest.mark.parametrize('signals', [(signal.SIGINT, signal.SIGINT),
                                     (signal.SIGTERM, signal.SIGINT)],
                         ids=['sigint_twice', 'sigterm_then_sigint'])
@pytest.mark.parametrize('held', ['request', 'wait'])
def test_stop_signals_while_the_main_thread_holds_the_stop_locks(held, signals):
    try:
        done = subprocess.run([sys.executable, '-c', CHILD, held, *map(str, signals)],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f'the process hung after its stop signals:\n{exc.stderr}\n{exc.stdout}')
    first, second = (signal.Signals(s).name for s in signals)
    assert done.returncode == 0, done.stderr
    assert 'main thread came back' in done.stdout, done.stdout + done.stderr
    assert f'requested True {first} received' in done.stdout, done.stdout + done.stderr
    assert done.stderr.count('received: stopping') == 1, done.stderr
    assert f'{first} received: stopping' in done.stderr, done.stderr
    assert f'{second} received again: already stopping' in done.stderr, done.stderr


STARTING = """
import os, signal, sys, time
from cl_core_ros.nodes.stop_signals import process_stop_request

stop = process_stop_request()
assert process_stop_request() is stop  # one per process
os.kill(os.getpid(), int(sys.argv[1]))
time.sleep(30)  # as if still importing torch: the signal must not wait for this
print('went on after the signal', flush=True)
"""


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM], ids=['sigint', 'sigterm'])
def test_a_stop_signal_before_start_up_ends_the_process_at_once_with_status_0(sig):
    """Before ``started()`` (the executables: while importing) a stop ends the process."""
    done = subprocess.run([sys.executable, '-c', STARTING, str(int(sig))], capture_output=True,
                          text=True, timeout=25)
    assert done.returncode == 0, done.stderr
    assert 'went on' not in done.stdout
    assert f'{sig.name} received while starting: exiting' in done.stderr, done.stderr
    assert 'Traceback' not in done.stderr, done.stderr
