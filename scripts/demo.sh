#!/usr/bin/env bash
# Teach a robot objects end to end: nodes over loopback DDS, service calls, top-3 predictions.
# Extra arguments go to the demo (see `.venv/bin/python -m cl_core_ros.tools.demo --help`).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m cl_core_ros.tools.demo "$@"
