"""The three nodes come up over loopback DDS with the documented topics, services and types."""

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TOPICS = {
    '/frames': 'sensor_msgs/msg/Image',
    '/predictions': 'cl_core_ros/msg/Prediction',
    '/learner/status': 'cl_core_ros/msg/LearnerStatus',
    '/learner/annotated_image': 'sensor_msgs/msg/Image',
    '/diagnostics': 'diagnostic_msgs/msg/DiagnosticArray',
    '/image_raw': 'sensor_msgs/msg/Image',
    '/image_raw/compressed': 'sensor_msgs/msg/CompressedImage',
    '/lessons': 'cl_core_ros/msg/LessonPack',
}
SERVICES = {
    '/learner/label_object': 'cl_core_ros/srv/LabelObject',
    '/learner/start_learning': 'cl_core_ros/srv/StartLearning',
    '/learner/list_classes': 'cl_core_ros/srv/ListClasses',
    '/learner/forget_class': 'cl_core_ros/srv/ForgetClass',
    '/learner/rename_class': 'cl_core_ros/srv/RenameClass',
    '/learner/consolidate': 'cl_core_ros/srv/Consolidate',
    '/learner/rollback': 'cl_core_ros/srv/Rollback',
    '/learner/save_state': 'std_srvs/srv/Trigger',
    '/learner/reset': 'std_srvs/srv/Trigger',
    '/learner/export_classes': 'cl_core_ros/srv/ExportClasses',
    '/learner/import_classes': 'cl_core_ros/srv/ImportClasses',
}


def _expect_graph(probe, ns=''):
    for name, type_name in TOPICS.items():
        full = name if name in ('/diagnostics', '/lessons') else ns + name
        probe.wait_for_topic(full, type_name, timeout=60)
    for name, type_name in SERVICES.items():
        probe.wait_for_service(ns + name, type_name, timeout=60)
    for node in ('camera', 'learner', 'consolidation'):
        probe.spin_until(
            lambda n=node: (n, ns or '/') in probe.node.get_node_names_and_namespaces(), 30,
            f'node {ns}/{node}')


def test_three_nodes_in_separate_processes(start_node, probe, tmp_path):
    state = ['-p', f'state_dir:={tmp_path / "state"}']
    procs = [start_node('camera_node'), start_node('learner_node', state),
             start_node('consolidation_node')]
    _expect_graph(probe)
    assert all(p.alive() for p in procs), [p.output()[-2000:] for p in procs]


def test_bringup_runs_all_nodes_in_one_process_with_namespace(start_node, probe, tmp_path):
    proc = start_node('bringup', args=['namespace:=robot1', f'state_dir:={tmp_path / "s"}'])
    _expect_graph(probe, '/robot1')
    assert proc.alive(), proc.output()[-2000:]


def test_invalid_parameter_is_rejected_at_start_naming_it(start_node):
    proc = start_node('camera_node', ['-p', 'max_rate:=-5.0'])
    proc.proc.wait(timeout=60)
    out = proc.output()
    assert proc.proc.returncode != 0
    assert 'max_rate' in out, out[-2000:]


def test_learner_rename_and_frames_remap_reach_its_frame_subscription(start_node, probe,
                                                                      tmp_path):
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from cl_core_ros.msg import Prediction
    start_node('learner_node', ['-p', f'state_dir:={tmp_path / "state"}',
                                '-r', '__node:=brain', '-r', 'frames:=/cam/model_input'])
    topic = '/cam/model_input'

    def subscriber_names():
        # An endpoint can be discovered before its node's name is ('_NODE_NAME_UNKNOWN_').
        names = [i.node_name for i in probe.node.get_subscriptions_info_by_topic(topic)]
        return names if names and '_NODE_NAME_UNKNOWN_' not in names else None

    probe.spin_until(subscriber_names, 60, f'a named subscriber on {topic}')
    probe.spin_until(lambda: ('brain', '/') in probe.node.get_node_names_and_namespaces(), 60,
                     'the renamed learner')
    assert subscriber_names() == ['_brain_frames']  # the learner's hidden frame node
    info = probe.node.get_subscriptions_info_by_topic(topic)
    assert info[0].qos_profile.reliability == qos_profile_sensor_data.reliability
    names = [n for n, _ in probe.node.get_node_names_and_namespaces()]
    assert names.count('brain') == 1 and 'learner' not in names
    predictions = probe.collect(Prediction, '/predictions', 10)
    pub = probe.node.create_publisher(Image, topic, qos_profile_sensor_data)
    frame = Image(height=128, width=128, encoding='rgb8', step=384, data=bytes(128 * 128 * 3))
    probe.spin_until(lambda: pub.publish(frame) or predictions, 60, 'a prediction')
    assert predictions[0].model_version == 0
