"""Consolidation node: decides when the learner runs its slow deep consolidation.

A timer on the node clock (so it follows ``use_sim_time`` during bag replay) checks the
learner's latched status; when at least ``min_new_experiences`` lessons are waiting, the learner
is idle and has been for ``min_idle_seconds``, it calls the learner's ``consolidate`` service.
Predictions keep flowing while the learner consolidates; a user teaching interrupts it and the
next tick tries again.
"""

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from cl_core_ros.msg import LearnerStatus
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
]

STATUS_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL)


class ConsolidationNode(Node):
    """Runs the learner's deep consolidation when lessons wait and the learner is idle."""

    def __init__(self, **kwargs):
        super().__init__('consolidation', **kwargs)
        cfg = declare(self, PARAMS)
        self._cfg = cfg
        self._min_new = cfg['min_new_experiences']
        self._min_idle = Duration(seconds=cfg['min_idle_seconds'])
        self._status: LearnerStatus | None = None
        self._idle_since = None
        self._pending_call = None
        self.runs = 0
        group = MutuallyExclusiveCallbackGroup()
        learner = cfg['learner']
        self.create_subscription(LearnerStatus, f'{learner}/status', self._on_status,
                                 STATUS_QOS, callback_group=group)
        self._client = self.create_client(Consolidate, f'{learner}/consolidate',
                                          callback_group=group)
        self._timer = self.create_timer(cfg['period'], self._tick, callback_group=group,
                                        clock=self.get_clock())
        on_set(self, PARAMS, cfg, apply=self._apply_params)
        self.get_logger().info(
            f'consolidation: every {cfg["period"]} s when >= {self._min_new} lessons wait and '
            f'the learner has been idle {cfg["min_idle_seconds"]} s')

    def _apply_params(self, changes: dict) -> None:
        """Put validated parameter changes into effect (the next check uses them)."""
        if 'min_new_experiences' in changes:
            self._min_new = changes['min_new_experiences']
        if 'min_idle_seconds' in changes:
            self._min_idle = Duration(seconds=changes['min_idle_seconds'])
        if 'period' in changes:
            set_timer_period(self._timer, changes['period'])

    def _on_status(self, msg: LearnerStatus) -> None:
        idle = msg.state == LearnerStatus.STATE_IDLE
        if idle and (self._status is None or self._status.state != LearnerStatus.STATE_IDLE):
            self._idle_since = self.get_clock().now()
        if not idle:
            self._idle_since = None
        self._status = msg

    def _tick(self) -> None:
        if not self._cfg['enabled'] or self._pending_call is not None:
            return
        status = self._status
        if status is None or status.pending_experiences < self._min_new:
            return
        if self._idle_since is None or self.get_clock().now() - self._idle_since < self._min_idle:
            return
        if not self._client.service_is_ready():
            self.get_logger().warning('learner consolidate service not available',
                                      throttle_duration_sec=30.0)
            return
        self.get_logger().info(
            f'consolidating {status.pending_experiences} pending lessons '
            f'(model version {status.model_version})')
        self._pending_call = self._client.call_async(Consolidate.Request(force=False))
        self._pending_call.add_done_callback(self._on_done)

    def _on_done(self, future) -> None:
        self._pending_call = None
        try:
            resp = future.result()
        except Exception as exc:  # noqa: BLE001 - a failed call must not stop the timer
            self.get_logger().error(f'consolidate call failed: {exc}')
            return
        if resp.success:
            self.runs += 1
            self.get_logger().info(
                f'consolidated {resp.experiences} lessons in {resp.seconds:.1f} s -> model '
                f'version {resp.model_version}, state version {resp.state_version}')
        else:
            self.get_logger().info(f'consolidation did not run: {resp.message}')


def main(args=None) -> int:
    """Run the consolidation node."""
    return spin_nodes(lambda: [ConsolidationNode()], args, num_threads=1)
