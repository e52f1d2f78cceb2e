"""Commit under RLIMIT_FSIZE (run by test_state_failures): writes past the limit fail with EFBIG.

Usage: fsize_worker.py STATE_DIR LIMIT_BYTES. Commits a small state (fits), then one larger than
the limit (must fail with StateStoreError), and prints the outcome as JSON.
"""

import json
from pathlib import Path
import resource
import signal
import sys

import torch

from cl_core_ros.core.state_store import StateStore, StateStoreError


def main() -> int:
    root, limit = Path(sys.argv[1]), int(sys.argv[2])
    # Without this the kernel kills the process with SIGXFSZ instead of failing the write.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    store = StateStore(root)
    first = store.commit({'w': torch.arange(1000, dtype=torch.float32)}, change='small',
                         classes=['a'])
    outcome = {'first': first.version, 'error': None, 'errno': None}
    try:
        store.commit({'w': torch.zeros(limit // 2)}, change='too big', classes=['a', 'b'])
    except StateStoreError as error:
        outcome.update(error=str(error), errno=error.errno, path=str(error.path))
    print(json.dumps(outcome))
    return 0


if __name__ == '__main__':
    sys.exit(main())
