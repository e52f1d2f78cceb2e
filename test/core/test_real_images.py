"""Real photos, taught one object per experience: AR1* remembers, naive fine-tuning forgets."""

import pytest
import torch

from cl_core_ros.core.ar1 import TrainSettings
from cl_core_ros.core.baselines import NaiveFineTuning
from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.learner import Learner

NAMES = ('chelsea', 'coffee', 'rocket', 'motorcycle', 'astronaut')


def _accuracy(predictions, name):
    return sum(p.labels[:1] == [name] for p in predictions) / len(predictions)


@pytest.mark.slow
def test_objects_taught_one_by_one_are_all_recognised(photo_latents):
    config = LearnerConfig(deep_epochs=2)
    learner = Learner(config)
    settings = TrainSettings(epochs=config.fast_epochs, new_per_batch=config.fast_new_per_batch,
                             replay_per_batch=config.fast_replay_per_batch, lr=config.fast_lr,
                             head_lr=config.fast_lr)
    naive = NaiveFineTuning(learner.feature_dim, settings)
    first_after_each = []
    for name in NAMES:
        train = photo_latents[name, 'train']
        learner.learn(name, train)
        naive.learn(train.pool, torch.full((len(train),), learner.labels.id_of(name)))
        first_after_each.append(_accuracy(learner.predict_latents(photo_latents[NAMES[0],
                                                                                'test']),
                                          NAMES[0]))
    # Held-out session frames of every object are recognised after the whole stream: most
    # frames of each object (the astronaut photo shows a shuttle, so a few rocket frames may
    # go there) and nearly all frames overall.
    final = {n: _accuracy(learner.predict_latents(photo_latents[n, 'test']), n) for n in NAMES}
    assert all(acc >= 0.6 for acc in final.values()), final
    assert sum(final.values()) / len(final) >= 0.9, final
    assert min(first_after_each) >= 0.9, first_after_each
    # Naive fine-tuning on the same features forgets the earlier objects.
    naive_old = []
    for name in NAMES[:-1]:
        test = photo_latents[name, 'test']
        hits = naive.predict(test.pool) == learner.labels.id_of(name)
        naive_old.append(hits.float().mean().item())
    assert max(naive_old) <= 0.2, naive_old
    # Consolidation (deep update) keeps them.
    report = learner.consolidate()
    assert report.changed and report.frames_used == 40 * len(NAMES)
    after = {n: _accuracy(learner.predict_latents(photo_latents[n, 'test']), n) for n in NAMES}
    assert all(acc >= 0.6 for acc in after.values()), after
    assert sum(after.values()) / len(after) >= 0.9, after
