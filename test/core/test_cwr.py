import math

import pytest
import torch

from cl_core_ros.core.cwr import CWRHead


def test_two_experiences_by_hand():
    head = CWRHead(feature_dim=2, capacity=4)
    # Experience 1: classes 0 and 1, 3 and 1 patterns.
    assert torch.equal(head.initial_rows([0, 1]), torch.zeros(2, 2))
    trained = torch.tensor([[1.0, 3.0], [-1.0, 1.0]])  # g = mean of all = 1.0
    head.consolidate([0, 1], trained, {0: 3, 1: 1})
    assert torch.allclose(head.cw[0], torch.tensor([0.0, 2.0]))
    assert torch.allclose(head.cw[1], torch.tensor([-2.0, 0.0]))
    assert head.past.tolist() == [3, 1, 0, 0]
    # Experience 2: classes 1 (seen) and 2 (new), 4 and 2 patterns.
    rows = head.initial_rows([1, 2])
    assert torch.allclose(rows, torch.tensor([[-2.0, 0.0], [0.0, 0.0]]))
    trained = torch.tensor([[2.0, 2.0], [0.0, 4.0]])  # g = 2.0
    head.consolidate([1, 2], trained, {1: 4, 2: 2})
    a = math.sqrt(1 / 4)
    expected_1 = (a * torch.tensor([-2.0, 0.0]) + torch.tensor([0.0, 0.0])) / (a + 1)
    assert torch.allclose(head.cw[1], expected_1)
    assert torch.allclose(head.cw[2], torch.tensor([-2.0, 2.0]))
    assert torch.allclose(head.cw[0], torch.tensor([0.0, 2.0]))  # not in C: untouched
    assert head.past.tolist() == [3, 5, 2, 0]


def test_never_seen_and_forgotten_rows_are_masked():
    head = CWRHead(feature_dim=2, capacity=4)
    head.consolidate([1, 2], torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [5, 5])
    # A feature aligned with nothing still never selects class 0 or 3 (zero rows, logit 0).
    x = torch.tensor([[-5.0, -5.0]])
    logits = head.logits(x)
    assert torch.isinf(logits[0, 0]) and torch.isinf(logits[0, 3])
    assert logits.argmax(1).item() in (1, 2)
    head.clear(1)
    assert head.known_classes() == [2]
    assert head.logits(torch.tensor([[10.0, 0.0]])).argmax(1).item() == 2


def test_capacity_grows_past_100_classes():
    head = CWRHead(feature_dim=3, capacity=100)
    head.consolidate([150], torch.ones(1, 3), [2])
    assert head.capacity >= 151
    assert head.known_classes() == [150]


def test_state_round_trip_and_shape_check():
    head = CWRHead(feature_dim=2, capacity=2)
    head.consolidate([0], torch.tensor([[1.0, 2.0]]), [3])
    other = CWRHead(feature_dim=2)
    other.load_state_dict(head.state_dict())
    assert torch.equal(other.cw, head.cw) and torch.equal(other.past, head.past)
    with pytest.raises(ValueError, match='shape'):
        CWRHead(feature_dim=5).load_state_dict(head.state_dict())


def test_consolidate_rejects_zero_counts():
    with pytest.raises(ValueError, match='positive count'):
        CWRHead(2).consolidate([0], torch.zeros(1, 2), [0])
