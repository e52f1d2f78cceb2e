"""Command-line tools: CORe50 to rosbag2 conversion, bag reading and playback, protocol runs."""
