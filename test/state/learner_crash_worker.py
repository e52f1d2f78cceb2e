"""A real learner that learns and commits lessons until SIGKILLed (run by test_learner_crash).

The worker builds the backbone once and renders the lesson frames once, then forks one learner
child per round: the child starts like a restarted node (a new Learner and Teacher that load the
newest stored version), then teaches lessons through the Teacher (label, frames, start_learning:
encode, fast update, durable commit) and acknowledges each lesson only after start_learning
returned success. The test kills children at random moments.

Protocol (lines): worker -> 'ready'; test -> 'go'; worker -> 'pid PID';
child -> 'loaded VERSION CLASSES' then 'ack VERSION LABEL' per lesson; test -> 'reap PID';
worker -> 'dead PID'; test -> 'quit'.
"""

import os
from pathlib import Path
import sys

import torch

from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.learner import Learner
from cl_core_ros.core.state_store import StateStore
from cl_core_ros.core.teacher import Teacher
from cl_core_ros.data.photos import render_frames

OBJECTS = ('chelsea', 'coffee', 'rocket', 'motorcycle', 'astronaut', 'clock')
FRAMES = 5
KEEP = 3


def config() -> LearnerConfig:
    """A learner small enough to commit quickly (the algorithm is the real one)."""
    return LearnerConfig(fast_buffer_size=100, deep_buffer_size=100, num_threads=1)


def write(line: str) -> None:
    os.write(1, f'{line}\n'.encode())


def child(root: Path, learner: Learner, frames: dict) -> None:
    teacher = Teacher(learner, StateStore(root, keep=KEEP, model_signature=learner.signature()),
                      gather_rate=1e6, min_frames=FRAMES)
    status = teacher.status()
    write(f'loaded {status.state_version} {status.num_classes}')
    lesson = status.state_version
    while True:
        name = OBJECTS[lesson % len(OBJECTS)]
        assert teacher.label(name, FRAMES).success
        for image in frames[name]:
            teacher.offer_frame(image)
        out = teacher.start_learning()
        assert out.success, out.message
        write(f'ack {out.details["state_version"]} {name}')
        lesson += 1


def main() -> None:
    root = Path(sys.argv[1])
    torch.set_num_threads(1)
    learner = Learner(config())
    frames = {name: render_frames(name, 1, FRAMES, size=128) for name in OBJECTS}
    # Warm up (first-call costs of training) once, so that every child learns at full speed.
    learner.learn('warm-up', learner.encode_images(frames[OBJECTS[0]]))
    learner.reset()
    write('ready')
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == 'go':
            pid = os.fork()
            if pid == 0:
                try:
                    child(root, learner, frames)
                finally:
                    os._exit(1)
            write(f'pid {pid}')
        elif cmd[0] == 'reap':
            os.waitpid(int(cmd[1]), 0)
            write(f'dead {cmd[1]}')
        elif cmd[0] == 'quit':
            return


if __name__ == '__main__':
    main()
