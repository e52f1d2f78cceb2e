#!/usr/bin/env bash
# Run the whole test suite (lint included) after bringing the distribution's environment up to
# date: `scripts/test.sh [--distro kilted|jazzy] [pytest args]` (default kilted, in .venv;
# jazzy in .venv-jazzy, see scripts/setup.sh). Extra arguments go to pytest, e.g.
# `scripts/test.sh --distro jazzy test/core -k cwr`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DISTRO=${CL_CORE_ROS_DISTRO:-kilted}
case "${1:-}" in
  --distro) DISTRO=${2:?--distro needs kilted or jazzy}; shift 2 ;;
  --distro=*) DISTRO=${1#--distro=}; shift ;;
esac
case "$DISTRO" in
  kilted) VENV=${CL_CORE_VENV:-$ROOT/.venv} ;;
  jazzy) VENV=${CL_CORE_VENV:-$ROOT/.venv-jazzy} ;;
  *) echo "[test] unknown ROS 2 distribution '$DISTRO' (kilted or jazzy)" >&2; exit 2 ;;
esac
"$ROOT/scripts/setup.sh" "$DISTRO"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
