"""Thin rclpy adapters around the ROS-free core: parameters in, messages out."""
