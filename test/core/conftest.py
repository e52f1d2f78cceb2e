"""Shared fixtures of the core tests: one pretrained backbone, cached photo latents."""

import pytest
import torch

from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.learner import Learner
from cl_core_ros.data.photos import render_frames

OBJECTS = ('chelsea', 'coffee', 'rocket', 'motorcycle', 'astronaut')
TRAIN_SESSION, TEST_SESSION = 0, 3


@pytest.fixture(scope='session', autouse=True)
def _threads():
    torch.set_num_threads(2)


@pytest.fixture(scope='session')
def encoder() -> Learner:
    """A default learner used only to encode frames (never taught)."""
    return Learner(LearnerConfig())


@pytest.fixture(scope='session')
def photo_latents(encoder):
    """Latents of the test objects: 40 training frames (session 0), 20 held-out (session 3)."""
    out = {}
    for name in OBJECTS:
        out[name, 'train'] = encoder.encode_images(render_frames(name, TRAIN_SESSION, 40))
        out[name, 'test'] = encoder.encode_images(render_frames(name, TEST_SESSION, 20))
    return out


@pytest.fixture
def small_config():
    """Return a factory of configs with small deep-update settings for fast tests."""
    def make(**overrides) -> LearnerConfig:
        values = dict(deep_epochs=1, deep_batch_size=32, deep_buffer_size=60,
                      fast_buffer_size=60)
        values.update(overrides)
        return LearnerConfig(**values)
    return make
