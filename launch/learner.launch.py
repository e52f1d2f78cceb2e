"""Bring up cl_core_ros: camera, learner and consolidation nodes.

Usage::

    ros2 launch cl_core_ros learner.launch.py image_topic:=/camera/color/image_raw
    ros2 launch cl_core_ros learner.launch.py namespace:=robot1 use_sim_time:=true

Without a ROS 2 launch install, ``bringup`` (lib/cl_core_ros/bringup) starts the same nodes in
one process from the same parameter file and takes the same arguments.

All three nodes are required: if one exits with an error (a bad parameters file, a state
directory made for another model), the whole launch stops and says which node and why, as
nav2's bringup does for its required nodes. A node that exits with status 0 (Ctrl-C) stops
nothing else by itself.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, LogInfo
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

# Exit statuses of the cl_core_ros executables (see cl_core_ros.nodes.runtime.spin_nodes).
EXIT_REASONS = {1: 'it failed', 2: 'invalid parameter', 3: 'the learner state cannot be used'}


def stop_launch_on_error(event, context):
    """On a node's exit with an error, log it and shut the whole launch down."""
    del context  # unused: the decision needs only the exit event
    if event.returncode == 0:
        return None
    why = EXIT_REASONS.get(event.returncode, f'exit code {event.returncode}')
    reason = (f'required node {event.process_name} exited with code {event.returncode} '
              f'({why}; its log above says more): stopping the launch')
    return [LogInfo(msg=f'[cl_core_ros] {reason}'),
            EmitEvent(event=Shutdown(reason=reason))]


def generate_launch_description():
    """Return the launch description of the three cl_core_ros nodes."""
    share_dir = get_package_share_directory('cl_core_ros')

    namespace = LaunchConfiguration('namespace')
    params_file = LaunchConfiguration('params_file')
    image_topic = LaunchConfiguration('image_topic')
    use_sim_time = LaunchConfiguration('use_sim_time')
    state_dir = LaunchConfiguration('state_dir')
    log_level = LaunchConfiguration('log_level')

    arguments = [
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the nodes, e.g. one per robot.'),
        DeclareLaunchArgument(
            'params_file',
            default_value=os.path.join(share_dir, 'config', 'learner.yaml'),
            description='Full path to the ROS 2 parameters file of the three nodes.'),
        DeclareLaunchArgument(
            'image_topic', default_value='image_raw',
            description="The camera driver's sensor_msgs/Image topic (the camera node also "
                        'subscribes <image_topic>/compressed).'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false',
            description='Use the /clock topic (bag replay) instead of the system clock.'),
        DeclareLaunchArgument(
            'state_dir', default_value='',
            description='Directory of the learned state; empty = $ROS_HOME/cl_core_ros/state '
                        '(~/.ros/cl_core_ros/state).'),
        DeclareLaunchArgument(
            'log_level', default_value='info', description='Logging level of the nodes.'),
    ]

    sim_time = {'use_sim_time': ParameterValue(use_sim_time, value_type=bool)}
    ros_args = ['--log-level', log_level]
    nodes = [
        Node(
            package='cl_core_ros', executable='camera_node', name='camera',
            namespace=namespace, output='screen', parameters=[params_file, sim_time],
            remappings=[('image_raw', image_topic),
                        ('image_raw/compressed', [image_topic, '/compressed'])],
            ros_arguments=ros_args, on_exit=stop_launch_on_error),
        Node(
            package='cl_core_ros', executable='learner_node', name='learner',
            namespace=namespace, output='screen',
            parameters=[params_file, sim_time,
                        {'state_dir': ParameterValue(state_dir, value_type=str)}],
            ros_arguments=ros_args, on_exit=stop_launch_on_error),
        Node(
            package='cl_core_ros', executable='consolidation_node', name='consolidation',
            namespace=namespace, output='screen', parameters=[params_file, sim_time],
            ros_arguments=ros_args, on_exit=stop_launch_on_error),
    ]
    return LaunchDescription(arguments + nodes)
