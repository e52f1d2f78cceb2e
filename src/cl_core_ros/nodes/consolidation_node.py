"""Consolidation node: decides when the learner runs its slow deep consolidation.

A timer on the node clock (so it follows ``use_sim_time`` during bag replay) checks the
learner's latched status; when at least ``min_new_experiences`` lessons are waiting, the learner
is idle and has been for ``min_idle_seconds``, it calls the learner's ``consolidate`` service.
Predictions keep flowing while the learner consolidates; a user teaching interrupts it and the
next tick tries again.

Timing rules (see :mod:`cl_core_ros.core.idle_clock`): idle time follows the node clock; a
backward jump of the clock (a new bag that starts earlier, ``--loop``) keeps the idle time
gathered so far; a clock that stops (a bag that ended or is paused) for ``period`` seconds of
steady time is replaced by the steady clock until it moves again; before the first ``/clock``
message (sim time still zero) nothing is consolidated. Checks are ``period`` apart on the node
clock (a steady timer polls both clocks every 0.25 s); while the node clock stands still they
are ``period`` apart on the steady clock; after a jump the next check is one period later on
the new time.

Every request has a bounded wait and a recovery: it is dropped when the learner's service
disappears, when the learner is seen not consolidating for ``ANSWER_GRACE`` seconds while the
request is pending (it was restarted and never got it), or after ``MAX_ANSWER_WAIT`` seconds;
the next check calls again. ``/diagnostics`` says what the node is waiting for. Its
callbacks are guarded (:class:`CallbackGuard`) and their error counts published there too.
"""


from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from cl_core_ros.core.idle_clock import IdleClock
from cl_core_ros.msg import LearnerStatus
from cl_core_ros.nodes.callback_guard import CallbackGuard
from cl_core_ros.nodes.params import declare, on_set, Param
from cl_core_ros.nodes.runtime import set_timer_period, spin_nodes
from cl_core_ros.srv import Consolidate

PARAMS = [
    Param('period', 30.0, 'Seconds (node clock) between checks.', min=0.1, max=86400.0,
          runtime=True),
    Param('min_new_experiences', 1, 'Lessons that must be waiting before consolidating.',
          min=1, max=100000, runtime=True),
    Param('min_idle_seconds', 5.0, 'The learner must have been idle this long (node clock).',
          min=0.0, max=86400.0, runtime=True),
    Param('learner', 'learner', 'Name of the learner node (relative: same namespace).',
          fixed="the learner's status subscription and service client are made at start-up"),
    Param('enabled', True, 'Set false to only consolidate on explicit service calls.',
          runtime=True),
    Param('diagnostics_period', 5.0, 'Seconds between /diagnostics messages (runs, callback '
          'errors).', min=0.1, max=3600.0, runtime=True),
]

STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

# Steady seconds a pending request may go on while the learner is seen not consolidating:
# a learner serving it says "consolidating" within 0.2 s, so it was lost (the learner was
# restarted, or the request went to a server that had died); it is dropped and asked again.
ANSWER_GRACE = 3.0
# Steady seconds after which a request is dropped whatever the learner says (6 h).
MAX_ANSWER_WAIT = 6 * 3600.0
# Steady seconds between polls of the clocks (checks themselves are `period` apart).
POLL_SECONDS = 0.25


class ConsolidationNode(Node):
    """Runs the learner's deep consolidation when lessons wait and the learner is idle."""

    def __init__(self, **kwargs):
        super().__init__('consolidation', **kwargs)
        cfg = declare(self, PARAMS)
        self._min_new = cfg['min_new_experiences']
        self._min_idle = cfg['min_idle_seconds']
        self._period = cfg['period']
        self._status: LearnerStatus | None = None
        self._idle = IdleClock(stall_after=self._period)
        self._pending_call = None
        self._call_sent = 0.0          # steady time of the pending request
        self._not_consolidating_since: float | None = None
        self._waiting_for = 'the first check'
        self._last_result = ''
        self.runs = 0
        self.guard = CallbackGuard(self.get_logger())
        self.dropped_requests = 0
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        group = MutuallyExclusiveCallbackGroup()
        learner = cfg['learner']
        self.create_subscription(LearnerStatus, f'{learner}/status',
                                 self.guard.subscription('status', self._on_status),
                                 STATUS_QOS, callback_group=group)
        self._client = self.create_client(Consolidate, f'{learner}/consolidate',
                                          callback_group=group)
        self._diagnostics = self.create_publisher(DiagnosticArray, '/diagnostics',
                                                  DIAGNOSTICS_QOS)
        # One steady timer polls; a check is due every `period` of node time (so it follows
        # use_sim_time), or of steady time while the node clock stands still or has not started.
        self._last_check: tuple[float, float] | None = None
        self._last_diagnostics = -1e18
        self._diagnostics_period = cfg['diagnostics_period']
        self._poll_timer = self.create_timer(
            min(POLL_SECONDS, self._period), self.guard.timer('poll', self._on_poll),
            callback_group=group, clock=self._steady)
        on_set(self, PARAMS, cfg, apply=self._apply_params)
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1),
                          on_clock_change=True),
            post_callback=self.guard.subscription('clock_jump', self._on_jump))
        self.get_logger().info(
            f'consolidation: every {cfg["period"]} s when >= {self._min_new} lessons wait and '
            f'the learner has been idle {cfg["min_idle_seconds"]} s')

    def _apply_params(self, changes: dict) -> None:
        """Put validated parameter changes into effect (the next poll uses them)."""
        if 'min_new_experiences' in changes:
            self._min_new = changes['min_new_experiences']
        if 'min_idle_seconds' in changes:
            self._min_idle = changes['min_idle_seconds']
        if 'diagnostics_period' in changes:
            self._diagnostics_period = changes['diagnostics_period']
        if 'period' in changes:
            self._period = changes['period']
            self._idle.stall_after = self._period
            set_timer_period(self._poll_timer, min(POLL_SECONDS, self._period))

    # ----- clocks ------------------------------------------------------------------------------
    def _now(self) -> tuple[float, float]:
        return (self.get_clock().now().nanoseconds * 1e-9,
                self._steady.now().nanoseconds * 1e-9)

    def _observe(self) -> None:
        self._idle.observe(*self._now())

    def _on_jump(self, jump) -> None:
        if jump.delta.nanoseconds < 0 or jump.clock_change is not None:
            now = self._now()
            self._idle.jumped(*now)
            self._last_check = now  # the next check one period after the jump, on the new time
            self.get_logger().info(
                f'the node clock jumped by {jump.delta.nanoseconds * 1e-9:.1f} s; idle time '
                'measured so far is kept')

    def _sim_time(self) -> bool:
        return bool(self.get_parameter('use_sim_time').value)

    # ----- learner status ----------------------------------------------------------------------
    def _on_status(self, msg: LearnerStatus) -> None:
        self._observe()
        idle = msg.state == LearnerStatus.STATE_IDLE
        if idle and not self._idle.idle:
            self._idle.start_idle()
        elif not idle:
            self._idle.stop_idle()
        consolidating = msg.state == LearnerStatus.STATE_CONSOLIDATING
        if consolidating:
            self._not_consolidating_since = None
        elif self._not_consolidating_since is None:
            self._not_consolidating_since = self._now()[1]
        self._status = msg

    # ----- checks ------------------------------------------------------------------------------
    def _on_poll(self) -> None:
        now = self._now()
        self._observe()
        last = self._last_check
        if last is None or now[0] < last[0]:  # first poll, or a jump back not reported
            last = self._last_check = (now[0], last[1] if last else now[1])
        node_due = now[0] - last[0] >= self._period
        steady_due = now[1] - last[1] >= self._period and (
            self._idle.stalled or not self._idle.started)
        if node_due or steady_due:
            self._last_check = now
            self._supervise_call()
            self._waiting_for = self._decide()
        if node_due or steady_due or (now[1] - self._last_diagnostics
                                      >= self._diagnostics_period):
            self._last_diagnostics = now[1]
            self._publish_diagnostics()

    def _decide(self) -> str:
        """Call the learner if it is time; return what the node now waits for."""
        if not self.get_parameter('enabled').value:
            return 'nothing: automatic consolidation is disabled (enabled: false)'
        if self._pending_call is not None:
            waited = self._now()[1] - self._call_sent
            return f'the answer of the consolidation asked {waited:.0f} s ago'
        if self._sim_time() and not self._idle.started:
            return '/clock (use_sim_time is set and no clock message came yet)'
        status = self._status
        if status is None:
            return 'the learner status'
        if status.pending_experiences < self._min_new:
            return (f'lessons ({status.pending_experiences} pending, {self._min_new} '
                    'needed)')
        idle = self._idle.idle_seconds()
        if idle is None:
            return f'the learner to be idle (it is {status.state_name})'
        if idle < self._min_idle:
            return f'{self._min_idle - idle:.1f} s more of learner idle time'
        if not self._client.service_is_ready():
            self.get_logger().warning('learner consolidate service not available',
                                      throttle_duration_sec=30.0)
            return 'the learner consolidate service'
        self.get_logger().info(
            f'consolidating {status.pending_experiences} pending lessons '
            f'(model version {status.model_version})')
        self._call_sent = self._now()[1]
        future = self._client.call_async(Consolidate.Request(force=False))
        self._pending_call = future
        future.add_done_callback(self.guard.done('consolidate_done', self._on_done))
        return 'the answer of the consolidation just asked'

    def _supervise_call(self) -> None:
        """Drop a pending request that can no longer be answered (see the module docstring)."""
        future = self._pending_call
        if future is None or future.done():
            return
        steady = self._now()[1]
        reason = None
        if not self._client.service_is_ready():
            reason = 'the learner consolidate service went away'
        elif (self._not_consolidating_since is not None
              and steady - max(self._not_consolidating_since, self._call_sent)
              >= ANSWER_GRACE):
            state = self._status.state_name if self._status else 'unknown'
            reason = (f'the learner has been {state} for {ANSWER_GRACE:.0f} s, not '
                      'consolidating (restarted?)')
        elif steady - self._call_sent >= MAX_ANSWER_WAIT:
            reason = f'no answer in {MAX_ANSWER_WAIT:.0f} s'
        if reason is None:
            return
        self._client.remove_pending_request(future)
        self._pending_call = None
        self.dropped_requests += 1
        self._last_result = f'request dropped: {reason}'
        self.get_logger().warning(f'consolidation request dropped: {reason}; asking again at '
                                  'the next check')

    def _on_done(self, future) -> None:
        if future is not self._pending_call:
            return  # a dropped request answered after all
        self._pending_call = None
        self._waiting_for = 'the next check'
        try:
            resp = future.result()
        except Exception as exc:  # noqa: BLE001 - a failed call must not stop the timer
            self._last_result = f'call failed: {exc}'
            self.get_logger().error(f'consolidate call failed: {exc}')
            return
        if resp.success:
            self.runs += 1
            self._last_result = (f'consolidated {resp.experiences} lessons in '
                                 f'{resp.seconds:.1f} s')
            self.get_logger().info(
                f'consolidated {resp.experiences} lessons in {resp.seconds:.1f} s -> model '
                f'version {resp.model_version}, state version {resp.state_version}')
        else:
            self._last_result = f'did not run: {resp.message}'
            self.get_logger().info(f'consolidation did not run: {resp.message}')

    # ----- diagnostics -------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        idle = self._idle.idle_seconds()
        if not self._sim_time():
            clock = 'ros time'
        elif not self._idle.started:
            clock = 'sim time, not started (no /clock yet)'
        elif self._idle.stalled:
            clock = 'sim time stopped: steady time counts'
        else:
            clock = 'sim time'
        status = self._status
        values = {
            'waiting_for': self._waiting_for, 'clock': clock,
            'pending_lessons': '' if status is None else str(status.pending_experiences),
            'learner_state': '' if status is None else status.state_name,
            'idle_seconds': '' if idle is None else f'{idle:.1f}',
            'min_idle_seconds': f'{self._min_idle:.1f}', 'period': f'{self._period:.1f}',
            'request_pending': str(self._pending_call is not None),
            'runs': str(self.runs), 'dropped_requests': str(self.dropped_requests),
            'clock_jumps': str(self._idle.jumps), 'last_result': self._last_result,
            **{k: str(v) for k, v in self.guard.diagnostic_values().items()},
        }
        level = DiagnosticStatus.OK
        if (values['callback_errors'] != '0' or self._idle.stalled
                or 'service' in self._waiting_for or 'dropped' in self._last_result):
            level = DiagnosticStatus.WARN
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [DiagnosticStatus(
            level=level, name=f'{self.get_fully_qualified_name()}: consolidation',
            message=f'waiting for {self._waiting_for}', hardware_id='cl_core_ros',
            values=[KeyValue(key=k, value=v) for k, v in values.items()])]
        self._diagnostics.publish(msg)


def main(args=None) -> int:
    """Run the consolidation node."""
    return spin_nodes(lambda: [ConsolidationNode()], args, num_threads=1)
