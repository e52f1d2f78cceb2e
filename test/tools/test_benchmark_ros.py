"""The ROS benchmark end to end on short phases (its figures are printed, not asserted)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.ros
# Raw 640x480 frames go reliable: under the benchmark's load, Jazzy's Fast DDS 2.14 loses most
# best-effort ones (README: Large frames); the JPEG stream stays best effort.
@pytest.mark.parametrize('encoding', ['raw', 'jpeg'])
def test_benchmark_ros_measures_every_phase(tmp_path, encoding):
    out = tmp_path / 'bench'
    proc = subprocess.run(
        [sys.executable, '-m', 'cl_core_ros.tools.benchmark_ros', '--out', str(out),
         '--seconds', '1.5', '--warmup', '0', '--lessons', '1', '--gather-frames', '5',
         '--fps', '15',
         *(['--jpeg'] if encoding == 'jpeg' else ['--reliability', 'reliable'])],
        capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / 'benchmark_ros.json').read_text())
    assert result['frame'] == ('jpeg 640x480' if encoding == 'jpeg' else '640x480 rgb8')
    assert result['reliability'] == ('best_effort' if encoding == 'jpeg' else 'reliable')
    phases = {row['phase']: row for row in result['phases']}
    assert list(phases) == ['idle', 'gathering', 'learning', 'consolidating', 'idle after']
    for name in ('idle', 'gathering', 'idle after'):
        row = phases[name]
        assert row['predictions'] > 0 and row['camera_hz'] > 0, row
        assert 0 < row['latency_p50_ms'] <= row['latency_p99_ms'] < 60_000, row
    assert phases['idle']['sent_hz'] > 5
    assert 0 < phases['idle']['learner_cpu_pct'] < 100 * 64  # percent of one core
    assert phases['consolidating']['consolidation_seconds'] > 0
    assert phases['learning']['training_seconds_median'] > 0
    header = (out / 'predictions.csv').read_text().splitlines()[0]
    assert header == 'arrival_s,latency_ms,inference_ms'
    assert 'idle after' in proc.stdout
