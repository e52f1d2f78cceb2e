import subprocess
import sys


def test_core_and_data_import_without_rclpy():
    code = (
        'import importlib, pkgutil, sys\n'
        'import cl_core_ros.core as core, cl_core_ros.data as data\n'
        'names = []\n'
        'for pkg in (core, data):\n'
        '    for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):\n'
        '        importlib.import_module(info.name)\n'
        '        names.append(info.name)\n'
        'importlib.import_module("cl_core_ros.tools.benchmark_core")\n'
        'assert "cl_core_ros.core.learner" in names, names\n'
        'assert "rclpy" not in sys.modules, "rclpy was imported"\n'
        'print(len(names))\n'
    )
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 10
