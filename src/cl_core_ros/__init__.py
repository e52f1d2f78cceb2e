"""cl_core_ros: continual object recognition for ROS 2 robots (AR1* with latent replay)."""
