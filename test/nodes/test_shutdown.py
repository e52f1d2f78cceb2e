"""Every node and bringup stop quickly and quietly on SIGINT (once or twice) and SIGTERM.

As ``ros2 launch`` on Ctrl-C (SIGINT from the terminal and from launch), ``timeout -s INT``,
systemd (SIGTERM): while frames flow and while the learner runs a deep consolidation, each
process exits with status 0 within 5 s, with no traceback and no ERROR line in its output.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from cl_core_ros.data.photos import render_frames
from cl_core_ros.msg import LearnerStatus, Prediction
from cl_core_ros.nodes.learner_node import LATCHED
from cl_core_ros.srv import LabelObject, StartLearning

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SIGNALS = {
    'sigint': [signal.SIGINT],
    'sigint_twice': [signal.SIGINT, signal.SIGINT],
    'sigterm': [signal.SIGTERM],
}
EXIT_WITHIN_S = 5.0
SMALL = ['-p', 'input_size:=128']  # the model at 128 px starts and runs faster


class Stream:
    """Publishes frames on ``topic`` from a thread, like a camera driver (or the camera node)."""

    def __init__(self, probe, topic: str, size: int, fps: float = 20.0):
        self.pub = probe.node.create_publisher(Image, topic, qos_profile_sensor_data)
        frames = render_frames('coffee', 1, 10, size=size)
        self.images = [Image(height=size, width=size, encoding='rgb8', step=3 * size,
                             data=np.ascontiguousarray(f).tobytes()) for f in frames]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(1.0 / fps,), daemon=True)
        self._thread.start()

    def _run(self, period: float) -> None:
        i = 0
        while not self._stop.wait(period):
            self.pub.publish(self.images[i % len(self.images)])
            i += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _stop_with(procs, signals: list[int]) -> list[float]:
    """Send ``signals`` to every process (as launch does), return each one's seconds to exit.

    A repeated signal is sent once the process has said it is stopping, so that it is a
    second delivery and not merged with the first by the kernel.
    """
    start = time.monotonic()
    for i, sig in enumerate(signals):
        for proc in procs:
            if proc.alive():
                os.killpg(proc.pid, sig)
        if i + 1 < len(signals):
            deadline = time.monotonic() + EXIT_WITHIN_S
            while time.monotonic() < deadline and any(
                    p.alive() and 'received: stopping' not in p.output() for p in procs):
                time.sleep(0.01)
    took = []
    for proc in procs:
        try:
            proc.proc.wait(timeout=max(0.1, start + EXIT_WITHIN_S + 5 - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        took.append(time.monotonic() - start)
    return took


def _assert_clean_exit(procs, took: list[float]) -> None:
    for proc, seconds in zip(procs, took):
        out = proc.output()
        assert not proc.alive(), f'{proc.cmd[1]} still running after {seconds:.1f} s:\n' + \
            out[-3000:]
        assert proc.proc.returncode == 0, f'exit {proc.proc.returncode}:\n{out[-3000:]}'
        assert seconds < EXIT_WITHIN_S, f'took {seconds:.1f} s:\n{out[-3000:]}'
        assert 'Traceback' not in out, out[-3000:]
        assert 'ERROR' not in out, out[-3000:]
        assert 'did not finish' not in out, out[-3000:]  # the clean path, not the watchdog


@pytest.mark.parametrize('how', sorted(SIGNALS))
@pytest.mark.parametrize('executable', ['camera_node', 'learner_node', 'consolidation_node',
                                        'bringup'])
def test_stops_cleanly_while_frames_flow(start_node, probe, tmp_path, executable, how):
    params = ['-p', f'state_dir:={tmp_path / "state"}', *SMALL]
    if executable == 'bringup':
        proc = start_node('bringup', args=[f'state_dir:={tmp_path / "state"}',
                                           f'params_file:={_small_params(tmp_path)}'])
    elif executable == 'learner_node':
        proc = start_node(executable, params)
    else:
        proc = start_node(executable)
    topic = '/frames' if executable == 'learner_node' else '/image_raw'
    stream = Stream(probe, topic, 128 if executable == 'learner_node' else 160)
    try:
        if executable in ('learner_node', 'bringup'):
            preds = probe.collect(Prediction, '/predictions', 10)
            probe.spin_until(lambda: len(preds) >= 3, 120, 'predictions')
        elif executable == 'camera_node':
            frames = probe.collect(Image, '/frames', qos_profile_sensor_data)
            probe.spin_until(lambda: len(frames) >= 3, 60, 'camera frames')
        else:
            probe.spin_until(lambda: 'consolidation' in probe.node.get_node_names(), 60,
                             'the consolidation node')
        assert proc.alive(), proc.output()
        took = _stop_with([proc], SIGNALS[how])
    finally:
        stream.close()
    _assert_clean_exit([proc], took)


def _catches(pid: int, sig: int) -> bool:
    """True once process ``pid`` has a handler for ``sig`` (SigCgt in /proc/PID/status)."""
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('SigCgt:'):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


@pytest.mark.parametrize('how', sorted(SIGNALS))
@pytest.mark.parametrize('executable', ['camera_node', 'learner_node', 'consolidation_node',
                                        'bringup'])
def test_stops_cleanly_while_still_loading(start_node, tmp_path, executable, how):
    """A stop while the executable still imports torch and rclpy (seconds) is clean too.

    The first line of each executable takes the stop signals over (Python itself only catches
    SIGINT, and turns it into a ``KeyboardInterrupt`` traceback); the signal goes as soon as
    the process catches SIGTERM, so it lands in the imports that follow.
    """
    args = [f'state_dir:={tmp_path / "state"}'] if executable == 'bringup' else None
    proc = start_node(executable, ['-p', f'state_dir:={tmp_path / "state"}'], args)
    deadline = time.monotonic() + 30
    while proc.alive() and not _catches(proc.pid, signal.SIGTERM) and \
            time.monotonic() < deadline:
        time.sleep(0.002)
    assert proc.alive() and _catches(proc.pid, signal.SIGTERM), proc.output()
    took = _stop_with([proc], SIGNALS[how])
    _assert_clean_exit([proc], took)
    assert 'received while starting: exiting' in proc.output(), proc.output()


def _small_params(tmp_path) -> str:
    """The package's parameters file with a 128 px model and quick consolidation timing."""
    import yaml

    from cl_core_ros.nodes.runtime import share_dir
    data = yaml.safe_load((share_dir() / 'config' / 'learner.yaml').read_text())
    data['/**/camera']['ros__parameters'].update(output_size=128, max_rate=20.0)
    learner = data['/**/learner']['ros__parameters']
    learner.update(input_size=128)
    learner['gather'].update(rate=30.0)
    learner['replay'].update(deep_size=40)
    learner['training'].update(deep_epochs=100)  # a consolidation that lasts
    data['/**/consolidation']['ros__parameters'].update(period=0.5, min_idle_seconds=0.0)
    path = tmp_path / 'params.yaml'
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _teach_and_wait_for_consolidation(probe) -> None:
    status = probe.collect(LearnerStatus, '/learner/status', LATCHED)
    resp = probe.call(LabelObject, '/learner/label_object',
                      LabelObject.Request(label='mug', num_frames=8), 120)
    assert resp.success, resp.message
    probe.spin_until(lambda: status and status[-1].frames_gathered >= 8, 60, 'frames gathered')
    resp = probe.call(StartLearning, '/learner/start_learning', StartLearning.Request())
    assert resp.success, resp.message
    # The consolidation node asks for the deep update as soon as the learner is idle.
    probe.spin_until(lambda: status[-1].state == LearnerStatus.STATE_CONSOLIDATING, 60,
                     'the consolidation to start')


@pytest.mark.parametrize('how', sorted(SIGNALS))
@pytest.mark.parametrize('layout', ['bringup', 'processes'])
def test_stops_cleanly_during_a_consolidation(start_node, probe, tmp_path, layout, how):
    params_file = _small_params(tmp_path)
    state = tmp_path / 'state'
    if layout == 'bringup':
        procs = [start_node('bringup', args=[f'state_dir:={state}',
                                             f'params_file:={params_file}'])]
    else:  # as ros2 launch runs them; the signal reaches all three, as on Ctrl-C
        common = ['--params-file', params_file]
        procs = [start_node('camera_node', common),
                 start_node('learner_node', [*common, '-p', f'state_dir:={state}']),
                 start_node('consolidation_node', common)]
    stream = Stream(probe, '/image_raw', 160)
    try:
        preds = probe.collect(Prediction, '/predictions', 10)
        probe.spin_until(lambda: len(preds) >= 3, 120, 'predictions')
        _teach_and_wait_for_consolidation(probe)
        took = _stop_with(procs, SIGNALS[how])
    finally:
        stream.close()
    _assert_clean_exit(procs, took)
    learner_log = procs[0].output() if layout == 'bringup' else procs[1].output()
    assert 'consolidat' in learner_log


HANGING_NODE = '''
import sys, threading
from rclpy.node import Node
from cl_core_ros.nodes.runtime import spin_nodes

class Hangs(Node):
    """Stands in for a DDS participant that never lets go when it is destroyed."""

    def __init__(self):
        super().__init__('hangs')
        self.timer = self.create_timer(0.05, self.tick)

    def tick(self):
        print('spinning', flush=True)
        self.timer.cancel()

    def destroy_node(self):
        threading.Event().wait()

sys.exit(spin_nodes(lambda: [Hangs()], grace_s=2.0))
'''


def test_shutdown_is_bounded_when_destroying_a_node_hangs(ros_env, tmp_path):
    """A node that cannot be destroyed does not keep the process alive past the grace time.

    Stands in for a Fast DDS participant whose destruction hangs (a known bug that cannot be
    produced on demand): here ``destroy_node`` never returns.
    """
    from cl_core_ros.tools.node_process import NodeProcess

    proc = NodeProcess([sys.executable, '-c', HANGING_NODE], ros_env, tmp_path / 'hangs.log')
    try:
        deadline = time.monotonic() + 60
        while 'spinning' not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 'spinning' in proc.output(), proc.output()
        start = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.proc.wait(timeout=10)
        took = time.monotonic() - start
    finally:
        proc.stop()
    out = proc.output()
    assert code == 0, out
    assert 2.0 <= took < 4.5, f'{took:.1f} s\n{out}'
    assert 'shutdown did not finish within 2 s' in out, out
    assert 'Traceback' not in out, out
