"""Commit learner-sized states in a loop until SIGKILLed (run by test_state_crash).

The worker imports torch once, then forks one writer child per round, so that the test can kill
dozens of writers within seconds (a fresh interpreter takes seconds to import torch). Each writer
is a real process doing real commits; SIGKILL hits it wherever it is, exactly as it would hit
the learner node.

Protocol, one line per message on stdin/stdout:
    worker -> test: 'ready'
    test -> worker: 'go STEP'    the worker forks a writer that commits STEP, STEP+1, ...
    worker -> test: 'pid PID'
    writer -> test: 'ack VERSION STEP' written only after commit() returned (unbuffered)
    test -> worker: 'reap PID'   after killing the writer; the worker waits for it
    worker -> test: 'dead PID'   every ack of that writer is before this line in the pipe
    test -> worker: 'quit'
"""

import os
from pathlib import Path
import sys

import torch

from cl_core_ros.core.state_store import StateStore

KEEP = 3


def base_tensors() -> dict[str, torch.Tensor]:
    """About 3.5 MB of deterministic data (the test rebuilds it to check what loads)."""
    generator = torch.Generator().manual_seed(1234)
    return {
        'head': torch.randn(500, 1280, generator=generator),
        'codes': torch.randint(0, 256, (250, 112, 8, 8), generator=generator, dtype=torch.uint8),
    }


def state_for(step: int, base: dict[str, torch.Tensor]) -> dict:
    """The state committed at ``step``: the step is written into every part."""
    head = base['head'].clone()
    head[0, 0] = step
    codes = base['codes'].clone()
    codes[0, 0, 0, 0] = step % 256
    return {
        'step': step,
        'head': {'weight': head, 'counts': torch.full((500,), step, dtype=torch.int64)},
        'replay': {'codes': codes, 'labels': torch.arange(250) % 7},
        'labels': [f'object {i}' for i in range(step % 50)],
    }


def write(line: str) -> None:
    os.write(1, f'{line}\n'.encode())


def writer(root: Path, step: int, base: dict[str, torch.Tensor]) -> None:
    store = StateStore(root, keep=KEEP)
    while True:
        state = state_for(step, base)
        info = store.commit(state, change=f'step {step}', classes=state['labels'])
        write(f'ack {info.version} {step}')
        step += 1


def main() -> int:
    torch.set_num_threads(1)  # no thread pool in the worker: fork stays safe
    root = Path(sys.argv[1])
    base = base_tensors()
    write('ready')
    for line in sys.stdin:
        command, *args = line.split()
        if command == 'go':
            pid = os.fork()
            if pid == 0:
                try:
                    writer(root, int(args[0]), base)
                finally:
                    os._exit(1)
            write(f'pid {pid}')
        elif command == 'reap':
            os.waitpid(int(args[0]), 0)
            write(f'dead {args[0]}')
        elif command == 'quit':
            return 0
    return 0


if __name__ == '__main__':
    sys.exit(main())
