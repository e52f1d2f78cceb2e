"""Camera node: the robot's images in, model-ready frames out.

Subscribes ``image_raw`` (sensor_msgs/Image) and ``image_raw/compressed``
(sensor_msgs/CompressedImage) with sensor-data QoS, crops the centre square (or a configured
region), resizes to the model input, throttles to ``max_rate`` and publishes rgb8 frames on
``frames`` with the original header. Bad frames are dropped, counted per reason and reported
with a throttled warning; the node never dies on input.
"""

from collections import Counter
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from cl_core_ros.core.preprocessing import crop_resize, Region
from cl_core_ros.nodes.image_conversion import (
    compressed_to_rgb,
    FrameError,
    image_to_rgb,
    rgb_to_image,
)
from cl_core_ros.nodes.params import declare, on_set, Param, ParameterError
from cl_core_ros.nodes.runtime import set_timer_period, spin_nodes

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
        self._pub = self.create_publisher(Image, 'frames', qos_profile_sensor_data)
        self.create_subscription(Image, 'image_raw', self._on_image, qos_profile_sensor_data)
        self.create_subscription(CompressedImage, 'image_raw/compressed', self._on_compressed,
                                 qos_profile_sensor_data)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(cfg['diagnostics_period'],
                                             self._publish_diagnostics)
        on_set(self, PARAMS, cfg, apply=self._apply_params,
               cross_check=lambda values: region_from_roi(values['roi']))
        self.get_logger().info(
            f'camera: {self._size}x{self._size} frames at <= {cfg["max_rate"]} Hz, '
            f'region {self._region or "centre"}')

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

    def _on_image(self, msg: Image) -> None:
        self._handle(msg, lambda: image_to_rgb(msg, max_pixels=self._max_pixels))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._handle(msg, lambda: compressed_to_rgb(
            msg, max_pixels=self._max_pixels, max_bytes=self._max_bytes))

    def _handle(self, msg, decode) -> None:
        self.received += 1
        now = time.monotonic()
        if now < self._next_time:
            self.dropped['throttled'] += 1
            return
        try:
            rgb = decode()
            frame = crop_resize(rgb, self._size, self._crop_region(rgb.shape[0], rgb.shape[1]))
        except FrameError as exc:
            self._drop(exc.reason, str(exc))
            return
        except (ValueError, MemoryError) as exc:
            self._drop('bad_frame', str(exc))
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

    def _publish_diagnostics(self) -> None:
        values = {'received': self.received, 'published': self.published,
                  **{f'dropped.{k}': v for k, v in sorted(self.dropped.items())}}
        bad = sum(v for k, v in self.dropped.items() if k != 'throttled')
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [DiagnosticStatus(
            level=DiagnosticStatus.WARN if bad else DiagnosticStatus.OK,
            name=f'{self.get_fully_qualified_name()}: camera',
            message=f'{bad} bad frames dropped' if bad else 'ok', hardware_id='cl_core_ros',
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
