"""ROS-free continual-learning core: backbones, AR1*, CWR*, replay, labels, state, metrics.

Nothing in this package imports rclpy; nodes are thin adapters around it.
"""
