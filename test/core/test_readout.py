"""The read-out (prototype prior + CWR* residual), the open-set floors and the NCM/AUROC tools."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cl_core_ros.core.ar1 import train_experience, TrainSettings
from cl_core_ros.core.backbone import centre_weights
from cl_core_ros.core.baselines import NearestClassMean
from cl_core_ros.core.learner import Learner
from cl_core_ros.core.metrics import AccuracyMatrix, auroc
from cl_core_ros.core.readout import (
    cross_scene_similarities,
    lesson_floors,
    lesson_spread,
    prototype_rows,
    readout_logits,
    readout_rows,
    similarity_floors,
)


def test_prototype_rows_and_logits_are_scaled_cosines():
    protos = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    rows = prototype_rows(protos, 10.0)
    assert torch.allclose(rows[0], torch.tensor([6.0, 8.0, 0.0]))
    assert torch.equal(rows[1], torch.zeros(3))  # a class without data stays zero
    features = torch.tensor([[0.0, 5.0, 0.0]])
    known = torch.tensor([True, False, True])
    logits = readout_logits(features, readout_rows(protos, torch.zeros(3, 3), 10.0), known)
    assert torch.allclose(logits[0, [0, 2]], torch.tensor([8.0, 10.0]))
    assert logits[0, 1] == float('-inf')
    residual = torch.zeros(3, 3)
    residual[0, 1] = 5.0  # the residual row adds to the prototype row
    rows = readout_rows(protos, residual, 10.0)
    assert readout_logits(features, rows, known)[0, 0] == pytest.approx(13.0)


def test_lesson_floors_are_a_share_of_each_class_spread():
    g = torch.Generator().manual_seed(0)
    tight = F.normalize(torch.eye(4)[0] + 0.05 * torch.randn(100, 4, generator=g), dim=1)
    loose = F.normalize(torch.eye(4)[2] + 0.6 * torch.randn(100, 4, generator=g), dim=1)
    mean = F.normalize(tight.mean(0), dim=0)
    assert lesson_spread(tight) == pytest.approx(float(torch.quantile(tight @ mean, 0.05)))
    assert lesson_spread(loose) < lesson_spread(tight)  # a lesson that varies more
    spreads = torch.tensor([lesson_spread(tight), float('nan'), float('nan'), float('nan')])
    features = torch.cat([tight, loose])
    labels = torch.cat([torch.zeros(100, dtype=torch.long), torch.full((100,), 2)])
    floors = lesson_floors(spreads, 0.5, features, labels)
    assert floors[0] == pytest.approx(0.5 * lesson_spread(tight))
    # no recorded spread (a state from before spreads): taken from the stored patterns
    assert floors[2] == pytest.approx(0.5 * lesson_spread(loose))
    assert floors[1] == 0 and floors[3] == 0  # no lesson at all: no floor
    assert torch.equal(lesson_floors(spreads, 0.0, features, labels), torch.zeros(4))
    assert torch.equal(lesson_floors(spreads, 0.5)[1:], torch.zeros(3))


def test_training_with_a_prior_learns_only_a_residual():
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.eye(2).repeat_interleave(20, 0) + 0.1 * torch.randn(40, 2, generator=g))
    y = torch.arange(2).repeat_interleave(20)
    settings = TrainSettings(epochs=4, new_per_batch=10, replay_per_batch=0, lr=0.1,
                             head_lr=0.1)
    prior = 16 * torch.eye(2)  # already separates the two classes perfectly
    with_prior = train_experience(rows=torch.zeros(2, 2), classes=[0, 1], new_x=x, new_y=y,
                                  settings=settings, generator=g, prior=prior, normalise=True)
    alone = train_experience(rows=torch.zeros(2, 2), classes=[0, 1], new_x=x, new_y=y,
                             settings=settings, generator=g, normalise=True)
    assert with_prior.rows.abs().max() < 0.05 < alone.rows.abs().max()
    with pytest.raises(ValueError, match='prior'):
        train_experience(rows=torch.zeros(2, 2), classes=[0, 1], new_x=x, new_y=y,
                         settings=settings, prior=torch.zeros(3, 2))


def test_centre_weights():
    uniform = centre_weights(4, 4, 0.0)
    assert torch.allclose(uniform, torch.full((4, 4), 1 / 16))
    w = centre_weights(6, 6, 0.18)
    assert w.sum().item() == pytest.approx(1.0)
    assert w[2:4, 2:4].sum() > 0.4 and w[0].sum() < 0.05  # the middle dominates, edges fade
    assert torch.allclose(w, w.T) and torch.allclose(w, w.flip(0))


def test_learner_agrees_with_nearest_class_mean_on_its_own_features(photo_latents,
                                                                   small_config):
    learner = Learner(small_config())
    ncm = NearestClassMean(learner.feature_dim)
    names = ['chelsea', 'coffee', 'rocket', 'motorcycle']
    for k, name in enumerate(names):
        latents = photo_latents[name, 'train']
        learner.learn(name, latents)
        ncm.learn(latents.pool, torch.full((len(latents),), k))
    for k, name in enumerate(names):
        test = photo_latents[name, 'test']
        ours = [names.index(p.labels[0]) for p in learner.predict_latents(test)]
        theirs = ncm.predict(test.pool).tolist()
        agree = np.mean([a == b for a, b in zip(ours, theirs)])
        assert agree >= 0.9, (name, ours, theirs)
        assert np.mean([a == k for a in ours]) >= np.mean([b == k for b in theirs]) - 0.05


def test_unknown_floors_follow_the_lessons(photo_latents, small_config):
    learner = Learner(small_config(unknown_quantile=0.0))  # the lesson-spread rule alone
    train = photo_latents['chelsea', 'train']
    learner.learn('cat', train)
    own = learner.predict_latents(photo_latents['chelsea', 'test'])
    ratio = small_config().unknown_ratio
    assert own[0].floor == pytest.approx(ratio * lesson_spread(train.pool), rel=1e-4)
    assert all(p.unknown == (p.similarity < p.floor) for p in own)
    # a second lesson in another scene does not loosen the floor: it is a mean over lessons
    learner.learn('cat', photo_latents['chelsea', 'test'])
    spread2 = lesson_spread(photo_latents['chelsea', 'test'].pool)
    after = learner.predict_latents(train)[0].floor
    assert after == pytest.approx(ratio * (lesson_spread(train.pool) + spread2) / 2, rel=1e-4)
    off = Learner(small_config(unknown_ratio=0.0))
    off.learn('cat', train)
    assert not any(p.unknown for p in off.predict_latents(photo_latents['rocket', 'test']))


def test_auroc_matches_pairwise_counting_with_ties():
    pos, neg = [0.9, 0.5, 0.5, 0.2], [0.5, 0.1, 0.3]
    pairs = [(p > n) + 0.5 * (p == n) for p in pos for n in neg]
    assert auroc(pos, neg) == pytest.approx(np.mean(pairs))
    assert auroc([1, 2], [3, 4]) == 0 and auroc([3, 4], [1, 2]) == 1
    assert math.isnan(auroc([], [1.0]))


def test_forgetting_of_chosen_groups():
    matrix = AccuracyMatrix(['a', 'b'])
    matrix.record({'a': 1.0})
    matrix.record({'a': 0.8, 'b': 1.0})
    matrix.record({'a': 0.7, 'b': 0.9})
    assert matrix.forgetting(['a']) == pytest.approx(0.3)
    assert matrix.forgetting() == pytest.approx((0.3 + 0.1) / 2)


def test_ncm_baseline_unknown_before_learning():
    ncm = NearestClassMean(3)
    assert ncm.predict(torch.ones(2, 3)).tolist() == [-1, -1]
    ncm.learn(torch.tensor([[1.0, 0, 0], [0, 0, 2.0]]), torch.tensor([0, 2]))
    assert ncm.predict(torch.tensor([[0.1, 0, 1.0], [1.0, 0.2, 0]])).tolist() == [2, 0]


def test_cross_scene_similarities_are_smoothed_and_skip_a_lesson_in_the_same_scene():
    prior = torch.tensor([1.0, 0.0])
    # frames at angles whose cosines to the prior are 1, 0.6, 0.2, 0.6
    cosines = torch.tensor([1.0, 0.6, 0.2, 0.6])
    frames = torch.stack([cosines, torch.sqrt(1 - cosines ** 2)], 1) * 3.0
    sims = cross_scene_similarities(frames, prior, prior_spread=0.95, window=2)
    assert torch.allclose(sims, torch.tensor([1.0, 0.8, 0.4, 0.4]))  # running mean of 2
    assert torch.allclose(cross_scene_similarities(frames, prior, 0.95, 1), cosines)
    # as close to the prior as its own lessons were to theirs: no new scene
    assert cross_scene_similarities(frames, prior, prior_spread=0.5, window=1) is None
    assert cross_scene_similarities(frames, torch.zeros(2), 0.95, 1) is None
    assert cross_scene_similarities(frames, prior, float('nan'), 1) is None


def test_similarity_floors_take_the_cross_scene_quantile_once_there_is_one():
    spreads = torch.tensor([0.9, 0.8, 0.0])
    few = torch.linspace(0.3, 0.7, 10)
    assert torch.allclose(similarity_floors(spreads, few, ratio=0.5, quantile=0.02),
                          0.5 * spreads)  # too few cross-scene frames yet
    many = torch.linspace(0.3, 0.7, 101)
    floors = similarity_floors(spreads, many, ratio=0.5, quantile=0.1)
    assert torch.allclose(floors, torch.full((3,), 0.34))  # the 10th of 101, every class
    assert torch.allclose(similarity_floors(spreads, many, ratio=0.5, quantile=0.0),
                          0.5 * spreads)
    assert torch.equal(similarity_floors(spreads, few, ratio=0.0, quantile=0.02),
                       torch.zeros(3))


def test_a_known_object_taught_in_another_scene_sets_the_floor(photo_latents, small_config):
    learner = Learner(small_config(unknown_quantile=0.05))
    train, test = photo_latents['chelsea', 'train'], photo_latents['chelsea', 'test']
    learner.learn('cat', train)
    before = learner.predict_latents(test)[0].floor
    ratio = learner.config.unknown_ratio
    assert before == pytest.approx(ratio * lesson_spread(train.pool), rel=1e-4)
    learner.learn('rocket', photo_latents['rocket', 'train'])  # a new class: nothing to measure
    assert learner.predict_latents(test)[0].floor == pytest.approx(before, rel=1e-4)
    prior = train.pool.double().mean(0).float()
    expected = cross_scene_similarities(test.pool, prior, lesson_spread(train.pool),
                                        learner.config.smoothing_window)
    assert expected is not None, 'the held-out session is another scene'
    learner.learn('cat', test)  # the same object in another scene
    ordered = torch.sort(expected).values
    value = float(ordered[int(0.05 * (len(ordered) - 1) + 0.5)])
    rocket = learner.predict_latents(photo_latents['rocket', 'test'])
    assert all(p.floor == pytest.approx(value, rel=1e-4) for p in rocket)  # one floor for all
    # kept in the state, dropped with the class, tunable while running
    restored = Learner(small_config(unknown_quantile=0.05))
    restored.load_state_dict(learner.state_dict())
    assert restored.predict_latents(test)[0].floor == pytest.approx(value, rel=1e-4)
    learner.tune(unknown_quantile=0.0)
    assert learner.predict_latents(test)[0].floor != pytest.approx(value, rel=1e-4)
    learner.tune(unknown_quantile=0.05)
    learner.forget('cat')
    floor = learner.predict_latents(photo_latents['rocket', 'test'])[0].floor
    assert floor == pytest.approx(ratio * lesson_spread(photo_latents['rocket', 'train'].pool),
                                  rel=1e-4)
