"""benchmark_shutdown starts an executable, stops it with each signal and prints the times."""

import pytest

from cl_core_ros.tools import benchmark_shutdown

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_prints_stop_times_per_signal(tmp_path, capsys, ros_env):
    assert benchmark_shutdown.main(['--out', str(tmp_path), '--runs', '1',
                                    '--executables', 'consolidation_node']) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [r[0] for r in rows] == ['consolidation_node'] * 3
    for row in rows:
        assert row[-1] == '[0]'  # exit status 0 for every signal
        assert 0 < float(row[-3]) < 5.0
