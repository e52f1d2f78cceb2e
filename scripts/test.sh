#!/usr/bin/env bash
# Run the whole test suite (lint included) after bringing .venv up to date.
# Extra arguments go to pytest, e.g. `scripts/test.sh test/core -k cwr`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
