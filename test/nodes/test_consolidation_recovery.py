"""The consolidation node never wedges: a learner killed mid-consolidation, a sim clock that stops.

Also a sim clock that jumps back. Real learner and consolidation nodes in their own processes,
over loopback DDS.
"""

import time

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from cl_core_ros.data.photos import render_frames
from cl_core_ros.msg import LearnerStatus
from cl_core_ros.nodes.learner_node import LATCHED, RELIABLE
from cl_core_ros.srv import LabelObject, StartLearning

pytestmark = [pytest.mark.ros, pytest.mark.slow]

IMAGES = render_frames('coffee', 1, 10)


class Teaching:
    """Lessons to the learner through its services, frames published on ``/frames``."""

    def __init__(self, probe):
        self.probe = probe
        self.status = probe.collect(LearnerStatus, '/learner/status', LATCHED)
        self.frames = probe.node.create_publisher(Image, '/frames', qos_profile_sensor_data)
        self.sent = 0

    def send(self):
        img = np.ascontiguousarray(IMAGES[self.sent % len(IMAGES)])
        self.sent += 1
        self.frames.publish(Image(height=128, width=128, encoding='rgb8', step=384,
                                  data=img.tobytes()))

    def lesson(self, label: str, *, spin=None):
        resp = self.probe.call(LabelObject, '/learner/label_object',
                               LabelObject.Request(label=label, num_frames=8), 120)
        assert resp.success, resp.message

        def gathered():
            self.send()
            if spin:
                spin()
            return self.status and self.status[-1].frames_gathered >= 8
        self.probe.spin_until(gathered, 60, 'frames gathered')
        out = self.probe.call(StartLearning, '/learner/start_learning',
                              StartLearning.Request(), 120)
        assert out.success, out.message

    def last(self) -> LearnerStatus:
        return self.status[-1]


def _learner(start_node, state_dir, *extra):
    return start_node('learner_node', ['-p', f'state_dir:={state_dir}', '-p', 'gather.rate:=50.0',
                                       '-p', 'replay.deep_size:=50', *extra])


def _calls(consolidation) -> int:
    return consolidation.output().count('consolidating ')


def _said(diagnostics) -> list[dict[str, str]]:
    return [{kv.key: kv.value for kv in s.values} for m in diagnostics for s in m.status
            if s.name.endswith('consolidation')]


def test_learner_killed_during_a_consolidation_then_restarted(start_node, probe, tmp_path):
    period = 3.0
    state = tmp_path / 'state'
    learner = _learner(start_node, state, '-p', 'training.deep_epochs:=40')
    consolidation = start_node('consolidation_node', [
        '-p', f'period:={period}', '-p', 'min_idle_seconds:=0.5'])
    diagnostics = probe.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    teach = Teaching(probe)
    teach.lesson('mug')
    probe.spin_until(lambda: teach.last().state == LearnerStatus.STATE_CONSOLIDATING, 60,
                     'the consolidation to start')
    learner.kill()  # SIGKILL during the consolidation: its request is never answered
    assert _calls(consolidation) == 1

    restarted = _learner(start_node, state, '-p', 'training.deep_epochs:=1')
    # The restarted learner restores the pending 'mug' lesson: the node drops its stale request
    # and consolidates it; only then is the new lesson taught, so that the call counted below is
    # the one for the new lesson, not the one for the restored lesson.
    probe.spin_until(lambda: restarted.alive() and teach.last().state == LearnerStatus.STATE_IDLE
                     and teach.last().pending_experiences == 0, 120,
                     'the restarted learner with the restored lesson consolidated')
    before = _calls(consolidation)
    assert before >= 2, 'the restored lesson was consolidated by a new request'
    teach.lesson('cup')
    learned = time.monotonic()
    probe.spin_until(lambda: _calls(consolidation) > before, 2 * period + 1.0,
                     'a new consolidation request within two periods of the new lesson')
    print(f'called again {time.monotonic() - learned:.1f} s after the new lesson '
          f'(period {period} s)')
    probe.spin_until(lambda: teach.last().pending_experiences == 0, 120,
                     'the lessons consolidated')
    assert 'consolidation request dropped' in consolidation.output()

    def said(text):
        return any(text in kv.value for m in diagnostics for s in m.status
                   if s.name.endswith('consolidation') for kv in s.values)
    probe.spin_until(lambda: said('dropped') and said('lessons (0 pending'), 3 * period,
                     'the diagnostics of the consolidation node')


def test_sim_time_clock_that_stops_or_jumps_back(start_node, probe, tmp_path):
    period = 2.0
    # Both nodes on sim time, as with `ros2 launch ... use_sim_time:=true` and a bag playing.
    _learner(start_node, tmp_path / 'state', '-p', 'training.deep_epochs:=1',
             '-p', 'use_sim_time:=true')
    consolidation = start_node('consolidation_node', [
        '-p', 'use_sim_time:=true', '-p', f'period:={period}', '-p', 'min_idle_seconds:=1.0'])
    diagnostics = probe.collect(DiagnosticArray, '/diagnostics', RELIABLE)
    clock = probe.node.create_publisher(Clock, '/clock', 10)
    teach = Teaching(probe)
    sim = [36_000.0]  # 10 h into the first bag

    def tick(step: float = 0.02):
        sim[0] += step
        whole = int(sim[0])
        clock.publish(Clock(clock=Time(sec=whole, nanosec=int((sim[0] - whole) * 1e9))))

    # The clock runs while a lesson is taught, then 0.5 s more (less than min_idle), then the
    # bag ends: /clock stops for good.
    teach.lesson('mug', spin=tick)
    end = sim[0] + 0.5
    probe.spin_until(lambda: tick() or sim[0] >= end, 30, 'the end of the first bag')
    stopped = time.monotonic()
    probe.spin_until(lambda: teach.last().pending_experiences == 0, 60,
                     'a consolidation after the clock stopped')
    waited = time.monotonic() - stopped
    print(f'clock stopped: consolidated {waited:.1f} s later (period {period} s)')
    assert waited < 3 * period + 30  # the stall is seen after one period; learning takes more
    assert _calls(consolidation) == 1

    def said(text):
        return any(text in kv.value for m in diagnostics for s in m.status
                   if s.name.endswith('consolidation') for kv in s.values)
    assert said('sim time stopped: steady time counts')

    # The next bag starts 9 h earlier: a lesson while it plays, then the clock jumps back
    # again (a --loop) 0.5 s after it: the idle time is kept, consolidation follows within a
    # period.
    sim[0] = 3_600.0
    tick()
    teach.lesson('cup', spin=tick)
    end = sim[0] + 0.5
    probe.spin_until(lambda: tick() or sim[0] >= end, 30, 'half a second of idle time')
    sim[0] = 60.0
    jumped = time.monotonic()

    def run_clock():  # the clock at wall speed from the jump on
        sim[0] = 60.0 + time.monotonic() - jumped
        tick(0.0)
        return _calls(consolidation) >= 2
    try:
        probe.spin_until(run_clock, period + 1.0,
                         'a consolidation within one period of the jump')
    except TimeoutError:
        raise AssertionError(f'no call; the node said: {_said(diagnostics)[-3:]}') from None
    print(f'clock jumped back: called {time.monotonic() - jumped:.1f} s later')
    probe.spin_until(lambda: tick() or teach.last().pending_experiences == 0, 60,
                     'the second consolidation')
    assert said('sim time') and any(kv.key == 'clock_jumps' and int(kv.value) >= 1
                                    for m in diagnostics for s in m.status for kv in s.values
                                    if s.name.endswith('consolidation'))
