"""Start the camera, learner and consolidation nodes in one process.

For machines without ``ros2 launch`` (pip-only installs): the same nodes, parameter file and
arguments as ``launch/learner.launch.py``, on one MultiThreadedExecutor.
"""

import argparse
from pathlib import Path

from rclpy.node import Node

from cl_core_ros.nodes.runtime import share_dir, spin_nodes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the launch-file arguments (``name:=value`` or ``--name value``)."""
    default_params = share_dir() / 'config' / 'learner.yaml'
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--namespace', default='', help='Namespace of the nodes.')
    parser.add_argument('--params-file', default=str(default_params),
                        help='ROS 2 parameters file of the three nodes.')
    parser.add_argument('--image-topic', default='image_raw',
                        help="The camera driver's sensor_msgs/Image topic.")
    parser.add_argument('--use-sim-time', default='false', choices=['true', 'false'],
                        help='Use /clock (bag replay) instead of the system clock.')
    parser.add_argument('--state-dir', default='',
                        help='Directory of the learned state (default under ROS_HOME).')
    parser.add_argument('--log-level', default='info', help='Logging level of the nodes.')
    parser.add_argument('--nodes', default='camera,learner,consolidation',
                        help='Comma-separated subset of nodes to start.')
    # Accept the launch-file form too: `bringup use_sim_time:=true`.
    argv = [a for arg in (argv or []) for a in _launch_style(arg)]
    return parser.parse_args(argv)


def _launch_style(arg: str) -> list[str]:
    if ':=' in arg and not arg.startswith('-'):
        name, value = arg.split(':=', 1)
        return ['--' + name.replace('_', '-'), value]
    return [arg]


def make_nodes(opts: argparse.Namespace) -> list[Node]:
    """Create the requested nodes with the parameters file and overrides applied."""
    from rclpy.parameter import Parameter

    from cl_core_ros.nodes.camera_node import CameraNode
    from cl_core_ros.nodes.consolidation_node import ConsolidationNode
    from cl_core_ros.nodes.learner_node import LearnerNode

    if not Path(opts.params_file).is_file():
        raise FileNotFoundError(f'params file not found: {opts.params_file}')
    sim = Parameter('use_sim_time', Parameter.Type.BOOL, opts.use_sim_time == 'true')
    common = ['--ros-args', '--params-file', opts.params_file, '--log-level', opts.log_level]
    wanted = {n.strip() for n in opts.nodes.split(',') if n.strip()}
    nodes: list[Node] = []
    if 'camera' in wanted:
        remap = ['-r', f'image_raw:={opts.image_topic}',
                 '-r', f'image_raw/compressed:={opts.image_topic}/compressed']
        nodes.append(CameraNode(namespace=opts.namespace, cli_args=common + remap,
                                parameter_overrides=[sim]))
    if 'learner' in wanted:
        state = Parameter('state_dir', Parameter.Type.STRING, opts.state_dir)
        nodes.append(LearnerNode(namespace=opts.namespace, cli_args=common,
                                 parameter_overrides=[sim, state]))
    if 'consolidation' in wanted:
        nodes.append(ConsolidationNode(namespace=opts.namespace, cli_args=common,
                                       parameter_overrides=[sim]))
    return nodes


def main(argv: list[str] | None = None) -> int:
    """Run the bringup."""
    import sys
    raw = sys.argv[1:] if argv is None else argv
    ros_args: list[str] = []
    if '--ros-args' in raw:  # anything from --ros-args on belongs to rclpy
        raw, ros_args = raw[:raw.index('--ros-args')], raw[raw.index('--ros-args'):]
    opts = parse_args(raw)
    # rclpy must not see the launch-style `name:=value` arguments (it would take them for
    # deprecated remappings).
    return spin_nodes(lambda: make_nodes(opts), args=[sys.argv[0], *ros_args])
