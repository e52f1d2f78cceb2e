import math

import numpy as np
import pytest
import torch
from torch import nn

from cl_core_ros.core.ar1 import TrainSettings
from cl_core_ros.core.baselines import (
    DeepSLDA,
    FixedReplacementReplay,
    JointTraining,
    NaiveFineTuning,
    ReplayHead,
)
from cl_core_ros.core.metrics import AccuracyMatrix, per_class_accuracy
from cl_core_ros.core.synaptic_intelligence import SynapticIntelligence


def test_synaptic_intelligence_by_hand():
    p = nn.Parameter(torch.tensor([1.0, 2.0]))
    params = {'w': p}
    si = SynapticIntelligence(strength=2.0, max_importance=0.001)
    si.begin_experience(params)
    p.grad = torch.tensor([0.5, -1.0])
    si.before_step(params)
    with torch.no_grad():
        p -= torch.tensor([0.1, -0.2])      # a step lowering the loss
    si.after_step(params)
    si.end_experience(params)
    # T = -g * delta = [0.05, 0.2]; omega = T / (delta^2 + 1e-7)
    expected = torch.tensor([0.05 / (0.01 + 1e-7), 0.2 / (0.04 + 1e-7)])
    assert torch.allclose(si.omega['w'], expected)
    assert torch.allclose(si.importance()['w'], torch.full((2,), 0.001))
    with torch.no_grad():
        p += torch.tensor([1.0, 1.0])
    # penalty = lambda / 2 * sum F (theta - theta*)^2 = 1 * 0.001 * 2
    assert si.penalty(params).item() == pytest.approx(0.002)
    clone = SynapticIntelligence()
    clone.load_state_dict(si.state_dict())
    assert clone.penalty(params).item() == pytest.approx(0.002)


def test_accuracy_matrix_metrics_by_hand():
    m = AccuracyMatrix(['a', 'b', 'c'])
    m.record({'a': 1.0})
    m.record({'a': 0.8, 'b': 0.9})
    m.record({'a': 0.6, 'b': 0.7, 'c': 1.0})
    assert m.average_accuracy(0) == 1.0
    assert m.average_accuracy() == pytest.approx((0.6 + 0.7 + 1.0) / 3)
    assert m.forgetting() == pytest.approx(((1.0 - 0.6) + (0.9 - 0.7)) / 2)
    assert m.backward_transfer() == pytest.approx(((0.6 - 1.0) + (0.7 - 0.9)) / 2)
    other = AccuracyMatrix([])
    other.load_state_dict(m.state_dict())
    assert np.allclose(other.matrix, m.matrix, equal_nan=True)
    assert per_class_accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == {0: 2 / 3, 1: 1.0}
    assert math.isnan(AccuracyMatrix(['a']).forgetting())


def _clusters(classes, n=30, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Shared component (like non-negative CNN features) plus a class-specific one.
    centres = torch.full((len(classes), dim), 1.5) + 2 * torch.eye(dim)[:len(classes)]
    xs = [centres[k] + 0.3 * torch.randn(n, dim, generator=g) for k in range(len(classes))]
    ys = [torch.full((n,), c) for c in classes]
    return xs, ys


SETTINGS = TrainSettings(epochs=8, new_per_batch=20, replay_per_batch=100, lr=0.05,
                         head_lr=0.05)


def test_deep_slda_matches_closed_form_lda():
    xs, ys = _clusters([0, 1, 2])
    slda = DeepSLDA(8, shrinkage=1e-4)
    for x, y in zip(xs, ys):  # one class per experience, in two halves
        slda.learn(x[:15], y[:15])
        slda.learn(x[15:], y[15:])
    x, y = torch.cat(xs).double(), torch.cat(ys)
    means = torch.stack([x[y == c].mean(0) for c in range(3)])
    centred = x - means[y]
    assert torch.allclose(slda.scatter, centred.T @ centred, atol=1e-8)
    assert torch.allclose(slda.means, means)
    assert (slda.predict(torch.cat(xs)) == y).float().mean() == 1.0


def test_naive_forgets_replay_and_joint_remember():
    xs, ys = _clusters([0, 1, 2])
    naive = NaiveFineTuning(8, SETTINGS)
    replay = ReplayHead(8, SETTINGS, memory='class_balanced', capacity=30)
    unbalanced = ReplayHead(8, SETTINGS, memory='unbalanced', capacity=30, per_experience=10)
    joint = JointTraining(8, SETTINGS)
    for x, y in zip(xs, ys):
        for strategy in (naive, replay, unbalanced, joint):
            strategy.learn(x, y)
    first = xs[0]
    assert (naive.predict(first) == 0).float().mean() < 0.2
    for strategy in (replay, unbalanced, joint):
        assert (strategy.predict(first) == 0).float().mean() > 0.9, strategy.name


def test_fixed_replacement_memory_is_unbalanced():
    memory = FixedReplacementReplay(10, per_experience=4)
    g = torch.Generator().manual_seed(0)
    memory.update({'x': torch.zeros(10, 1)}, torch.zeros(10, dtype=torch.long), g)
    memory.update({'x': torch.ones(10, 1)}, torch.ones(10, dtype=torch.long), g)
    assert memory.class_counts() == {0: 6, 1: 4}
