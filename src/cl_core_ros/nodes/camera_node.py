"""Camera node: the robot's images in, model-ready frames out.

Subscribes ``image_raw`` (sensor_msgs/Image) and ``image_raw/compressed``
(sensor_msgs/CompressedImage) with sensor-data QoS (best effort by default; ``qos.reliability``
and ``qos.depth`` choose), crops the centre square (or a configured region), resizes to the model
input, throttles to ``max_rate`` and publishes rgb8 frames on ``frames`` with the original
header. Bad frames are dropped, counted per reason and reported with a throttled warning; any
other exception in a callback is counted and logged by the node's :class:`CallbackGuard`: the
node never dies on input. When the image topics have publishers but nothing arrives for
``input_timeout`` seconds (mismatched QoS), or most frames are lost (DDS reports them: large
frames to a best-effort subscription on a default DDS set-up), a throttled warning and the
``/diagnostics`` status say so and what to do.
"""

from collections import Counter, deque
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    qos_profile_sensor_data,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import CompressedImage, Image

from cl_core_ros.core.preprocessing import crop_resize, Region
from cl_core_ros.nodes.callback_guard import CallbackGuard
from cl_core_ros.nodes.image_conversion import (
    compressed_to_rgb,
    FrameError,
    image_to_rgb,
    rgb_to_image,
)
from cl_core_ros.nodes.params import declare, on_set, Param, ParameterError
from cl_core_ros.nodes.runtime import set_timer_period, spin_nodes

try:  # rclpy >= Iron
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

# More frames lost in one report than a camera sends in months: a misreport, not a count.
MAX_PLAUSIBLE_LOST = 1 << 31
SUBSCRIPTIONS = 'the image subscriptions are made with it at start-up'

PARAMS = [
    Param('output_size', 192, 'Side in pixels of the square frames published on `frames`.',
          min=16, max=1024, fixed="it must match the learner's input_size, which shapes its "
          'model'),
    Param('crop_size', 0, 'Side of the centred square to crop; 0 = the largest centred square.',
          min=0, max=16384, runtime=True),
    Param('roi', [0, 0, 0, 0], 'Region to crop instead, as [x, y, width, height] in pixels; '
          'all zeros = centre crop.', runtime=True),
    Param('max_rate', 10.0, 'Most frames per second to publish (the rest are dropped).',
          min=0.1, max=240.0, runtime=True),
    Param('max_pixels', 40_000_000, 'Larger input images are dropped (protects memory).',
          min=1, max=400_000_000, runtime=True),
    Param('max_compressed_bytes', 20_000_000, 'Larger compressed images are dropped.',
          min=1, max=400_000_000, runtime=True),
    Param('qos.reliability', 'best_effort', 'Reliability of the image subscriptions: '
          'best_effort (sensor data; takes best-effort and reliable publishers) or reliable '
          '(only reliable publishers; large raw frames then arrive on a default Fast DDS '
          'set-up).', choices=('best_effort', 'reliable'), fixed=SUBSCRIPTIONS),
    Param('qos.depth', 5, 'History depth of the image subscriptions.', min=1, max=1000,
          fixed=SUBSCRIPTIONS),
    Param('input_timeout', 5.0, 'Seconds with a publisher on the image topics and no image '
          'received before a warning and a diagnostics entry say so.', min=0.5, max=3600.0,
          runtime=True),
    Param('diagnostics_period', 1.0, 'Seconds between /diagnostics messages (frame counts, '
          'drops per reason).', min=0.1, max=3600.0, runtime=True),
]


def region_from_roi(roi: list[int]) -> Region | None:
    """Return the crop region of a ``roi`` parameter value (None: all zeros, centre crop).

    Raises ParameterError unless it is 4 non-negative ints with width and height both set or
    all four zero.
    """
    roi = [int(v) for v in roi]
    if len(roi) != 4 or any(v < 0 for v in roi):
        raise ParameterError(f"parameter 'roi' must be 4 non-negative ints [x, y, w, h], "
                             f'got {roi}')
    if (roi[2] > 0) != (roi[3] > 0) or (roi[2] == 0 and any(roi[:2])):
        raise ParameterError(f"parameter 'roi' = {roi} needs both a width and a height "
                             '(or all zeros for the centre crop)')
    return Region(*roi) if roi[2] > 0 else None


class CameraNode(Node):
    """Turns camera images into model-ready square RGB frames."""

    def __init__(self, **kwargs):
        super().__init__('camera', **kwargs)
        cfg = declare(self, PARAMS)
        self._region = region_from_roi(cfg['roi'])
        self._crop_size = cfg['crop_size']
        self._size = cfg['output_size']
        self._min_period = 1.0 / cfg['max_rate']
        self._max_pixels = cfg['max_pixels']
        self._max_bytes = cfg['max_compressed_bytes']
        self._next_time = 0.0
        self.received = 0
        self.published = 0
        self.dropped: Counter[str] = Counter()
        self.guard = CallbackGuard(self.get_logger())
        self._reliability = cfg['qos.reliability']
        self._input_timeout = cfg['input_timeout']
        self._last_input = None  # monotonic time of the last image, or publishers first seen
        self._input_problem = ''  # advice while publishers are seen and nothing arrives
        self.incompatible_qos = 0
        self.lost = 0  # frames DDS reports lost (best effort: a fragment missing)
        self._window: deque[tuple[float, int, int]] = deque()  # (time, received, lost)
        image_qos = QoSProfile(
            depth=cfg['qos.depth'], history=HistoryPolicy.KEEP_LAST,
            durability=DurabilityPolicy.VOLATILE,
            reliability=(ReliabilityPolicy.RELIABLE if self._reliability == 'reliable'
                         else ReliabilityPolicy.BEST_EFFORT))
        events = SubscriptionEventCallbacks(
            incompatible_qos=self.guard.subscription('incompatible_qos',
                                                     self._on_incompatible_qos),
            message_lost=self.guard.subscription('message_lost', self._on_message_lost))
        self._pub = self.create_publisher(Image, 'frames', qos_profile_sensor_data)
        self._subs = [
            self.create_subscription(Image, 'image_raw',
                                     self.guard.subscription('image_raw', self._on_image),
                                     image_qos, event_callbacks=events),
            self.create_subscription(CompressedImage, 'image_raw/compressed',
                                     self.guard.subscription('image_raw/compressed',
                                                             self._on_compressed),
                                     image_qos, event_callbacks=events)]
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(
            cfg['diagnostics_period'], self.guard.timer('diagnostics', self._publish_diagnostics))
        self._input_timer = self.create_timer(min(1.0, self._input_timeout / 2),
                                              self.guard.timer('input_check', self._check_input))
        on_set(self, PARAMS, cfg, apply=self._apply_params,
               cross_check=lambda values: region_from_roi(values['roi']))
        self.get_logger().info(
            f'camera: {self._size}x{self._size} frames at <= {cfg["max_rate"]} Hz, '
            f'region {self._region or "centre"}, {self._reliability} image subscriptions')

    def _apply_params(self, changes: dict) -> None:
        """Put validated parameter changes into effect from the next image on."""
        if 'roi' in changes:
            self._region = region_from_roi(changes['roi'])
        if 'crop_size' in changes:
            self._crop_size = changes['crop_size']
        if 'max_rate' in changes:
            self._min_period = 1.0 / changes['max_rate']
            self._next_time = 0.0
        if 'max_pixels' in changes:
            self._max_pixels = changes['max_pixels']
        if 'max_compressed_bytes' in changes:
            self._max_bytes = changes['max_compressed_bytes']
        if 'diagnostics_period' in changes:
            set_timer_period(self._diag_timer, changes['diagnostics_period'])
        if 'input_timeout' in changes:
            self._input_timeout = changes['input_timeout']
            set_timer_period(self._input_timer, min(1.0, self._input_timeout / 2))

    def _on_image(self, msg: Image) -> None:
        self._handle(msg, lambda: image_to_rgb(msg, max_pixels=self._max_pixels))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._handle(msg, lambda: compressed_to_rgb(
            msg, max_pixels=self._max_pixels, max_bytes=self._max_bytes))

    def _handle(self, msg, decode) -> None:
        self.received += 1
        now = time.monotonic()
        self._last_input = now
        if now < self._next_time:
            self.dropped['throttled'] += 1
            return
        try:
            rgb = decode()
        except FrameError as exc:
            self._drop(exc.reason, str(exc))
            return
        except MemoryError as exc:
            self._drop('out_of_memory', str(exc))
            return
        try:
            frame = crop_resize(rgb, self._size, self._crop_region(rgb.shape[0], rgb.shape[1]))
        except ValueError as exc:  # the configured roi does not fit this image
            self._drop('roi_outside_image', str(exc))
            return
        # A schedule, not a minimum gap: frames arriving with jitter around the target rate
        # are not dropped, and the average never exceeds max_rate.
        self._next_time = max(self._next_time + self._min_period, now - self._min_period)
        self._pub.publish(rgb_to_image(frame, msg.header))
        self.published += 1

    def _crop_region(self, height: int, width: int) -> Region | None:
        if self._region is not None:
            return self._region
        if self._crop_size:
            side = min(self._crop_size, height, width)
            return Region((width - side) // 2, (height - side) // 2, side, side)
        return None

    def _on_incompatible_qos(self, info) -> None:
        self.incompatible_qos += 1
        self.get_logger().warning(
            f'an image publisher offers QoS incompatible with this {self._reliability} '
            f'subscription (policy {getattr(info, "last_policy_kind", "?")}): '
            f'{self._advice(["best_effort"])}', throttle_duration_sec=30.0)

    def _on_message_lost(self, info) -> None:
        change = int(getattr(info, 'total_count_change', 1))
        # Fast DDS 2.14 (Jazzy) can report a gap in sequence numbers as about 2**32 samples
        # lost; a count that no stream of frames could reach is taken as one loss.
        self.lost += change if 0 < change < MAX_PLAUSIBLE_LOST else 1

    def _publisher_reliabilities(self) -> list[str]:
        found = []
        for sub in self._subs:
            for info in self.get_publishers_info_by_topic(sub.topic_name):
                found.append('reliable' if info.qos_profile.reliability
                             == ReliabilityPolicy.RELIABLE else 'best_effort')
        return found

    def _advice(self, publishers: list[str]) -> str:
        if self._reliability == 'reliable' and 'best_effort' in publishers:
            return ('a best-effort publisher never matches a reliable subscription: set '
                    'qos.reliability:=best_effort')
        if self._reliability == 'best_effort' and 'reliable' in publishers:
            return ('large raw frames from a reliable publisher are mostly lost to a '
                    'best-effort subscription on a default Fast DDS set-up (no enlarged '
                    'shared-memory segment): set qos.reliability:=reliable, or subscribe to '
                    'the compressed topic, or enlarge the shared-memory segment (README: '
                    'Large frames)')
        return ('check the topic remap, ROS_DOMAIN_ID and the DDS transport; large frames '
                'need qos.reliability:=reliable on both ends or the compressed topic (README: '
                'Large frames)')

    def _check_input(self) -> None:
        """Warn when the image topics have publishers but frames do not arrive or get lost."""
        publishers = self._publisher_reliabilities()
        now = time.monotonic()
        self._window.append((now, self.received, self.lost))
        while len(self._window) > 1 and now - self._window[1][0] >= self._input_timeout:
            self._window.popleft()
        if not publishers:
            self._last_input = None
            self._input_problem = ''
            return
        if self._last_input is None:
            self._last_input = now  # publishers just seen: give them input_timeout
        since, received, lost = self._window[0]
        got, lost = self.received - received, self.lost - lost
        quiet = now - self._last_input
        seen = f'{len(publishers)} publisher(s) ({", ".join(sorted(set(publishers)))}) seen'
        if lost and lost >= got:
            self._input_problem = (f'{seen}, {lost} of {lost + got} frames lost in the last '
                                   f'{now - since:.0f} s: {self._advice(publishers)}')
        elif quiet >= self._input_timeout:
            self._input_problem = (f'{seen}, nothing received for {quiet:.0f} s: '
                                   f'{self._advice(publishers)}')
        else:
            self._input_problem = ''
            return
        self.get_logger().warning(self._input_problem, throttle_duration_sec=30.0)

    def _publish_diagnostics(self) -> None:
        values = {'received': self.received, 'published': self.published,
                  **{f'dropped.{k}': v for k, v in sorted(self.dropped.items())},
                  **self.guard.diagnostic_values(),
                  'qos.reliability': self._reliability,
                  'input': 'ok' if not self._input_problem else (
                      'frames lost' if ' lost in ' in self._input_problem
                      else 'publishers seen, nothing received'),
                  'lost': self.lost, 'incompatible_qos': self.incompatible_qos}
        if self._input_problem:
            values['input.advice'] = self._input_problem
        bad = sum(v for k, v in self.dropped.items() if k != 'throttled')
        errors = values['callback_errors']
        problems = [f'{bad} bad frames dropped'] if bad else []
        problems += [f'{errors} callback errors'] if errors else []
        problems += [self._input_problem] if self._input_problem else []
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [DiagnosticStatus(
            level=DiagnosticStatus.WARN if problems else DiagnosticStatus.OK,
            name=f'{self.get_fully_qualified_name()}: camera',
            message='; '.join(problems)[:500] if problems else 'ok', hardware_id='cl_core_ros',
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])]
        self._diag_pub.publish(msg)

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped[reason] += 1
        self.get_logger().warning(
            f'dropped frame ({detail}); dropped so far: {dict(self.dropped)}',
            throttle_duration_sec=5.0)


def main(args=None) -> int:
    """Run the camera node."""
    return spin_nodes(lambda: [CameraNode()], args, num_threads=1)
