import pytest
import torch

from cl_core_ros.core.replay import balanced_quotas, ClassBalancedReplay, RandomReplay


def _batch(label, n, start=0):
    values = torch.arange(start, start + n, dtype=torch.float32)[:, None]
    return {'x': values}, torch.full((n,), label, dtype=torch.long)


def _consistent(memory):
    # Labels were stored with their latents: value ranges encode the class.
    payload, labels = memory.items()
    return all(int(v) // 1000 == int(y) for v, y in zip(payload['x'][:, 0], labels))


def test_balanced_quotas_by_hand():
    assert balanced_quotas({0: 2, 1: 10, 2: 10}, 10) == {0: 2, 1: 4, 2: 4}
    assert balanced_quotas({0: 10, 1: 10, 2: 10}, 10) == {0: 4, 1: 3, 2: 3}
    assert balanced_quotas({0: 1, 1: 1}, 10) == {0: 1, 1: 1}
    assert balanced_quotas({0: 5, 1: 5, 2: 5}, 2) == {0: 1, 1: 1, 2: 0}


def test_class_balanced_quotas_and_random_replacement():
    g = torch.Generator().manual_seed(0)
    memory = ClassBalancedReplay(10)
    memory.update(*_batch(0, 30, 0), generator=g)
    assert memory.class_counts() == {0: 10}
    memory.update(*_batch(1, 30, 1000), generator=g)
    assert memory.class_counts() == {0: 5, 1: 5}
    memory.update(*_batch(2, 2, 2000), generator=g)
    assert memory.class_counts() == {0: 4, 1: 4, 2: 2}
    assert _consistent(memory)
    # Kept patterns of class 1 are a random subset, not the first ones.
    kept = sorted(int(v) for v, y in zip(memory.payload['x'][:, 0], memory.labels) if y == 1)
    assert kept != list(range(1000, 1004))


def test_random_policy_fill_first_then_overwrite():
    g = torch.Generator().manual_seed(1)
    memory = RandomReplay(10)
    memory.update(*_batch(0, 20, 0), generator=g)  # h = min(10 // 1, 20) = 10 (fills)
    assert memory.class_counts() == {0: 10}
    memory.update(*_batch(1, 20, 1000), generator=g)  # h = min(10 // 2, 20) = 5
    assert memory.class_counts() == {0: 5, 1: 5}
    memory.update(*_batch(2, 2, 2000), generator=g)  # h = min(10 // 3, 2) = 2
    assert len(memory) == 10 and memory.class_counts()[2] == 2
    assert _consistent(memory)


def test_random_policy_partial_fill():
    g = torch.Generator().manual_seed(2)
    memory = RandomReplay(10)
    memory.update(*_batch(0, 4, 0), generator=g)  # h = 4, fills 4 slots
    memory.update(*_batch(1, 20, 1000), generator=g)  # h = 5: 5 free slots, no overwrite
    assert memory.class_counts() == {0: 4, 1: 5}


@pytest.mark.parametrize('memory', [ClassBalancedReplay(10), RandomReplay(10)])
def test_purge_and_state_round_trip(memory):
    g = torch.Generator().manual_seed(0)
    memory.update(*_batch(0, 6, 0), generator=g)
    memory.update(*_batch(1, 6, 1000), generator=g)
    assert memory.purge(0) > 0
    assert set(memory.class_counts()) == {1}
    assert memory.purge(7) == 0
    clone = type(memory)(10)
    clone.load_state_dict(memory.state_dict())
    assert torch.equal(clone.labels, memory.labels)
    assert torch.equal(clone.payload['x'], memory.payload['x'])
    assert clone.experiences == memory.experiences


def test_sample_distinct_and_labelled():
    memory = ClassBalancedReplay(8)
    memory.update(*_batch(3, 8, 3000))
    payload, labels = memory.sample(5, torch.Generator().manual_seed(0))
    assert len(set(payload['x'][:, 0].tolist())) == 5 and labels.tolist() == [3] * 5


@pytest.mark.parametrize('lessons', [2, 3, 5])
def test_class_memory_is_a_reservoir_over_every_lesson(lessons):
    # k lessons of 100 patterns of one class into 60 slots: each lesson keeps about 60 / k,
    # not the last lesson almost all of them (averaged over seeds; lesson j holds values j*100..).
    shares = torch.zeros(lessons)
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        memory = ClassBalancedReplay(60)
        for j in range(lessons):
            memory.update(*_batch(0, 100, 100 * j), generator=g)
        assert len(memory) == 60 and memory.seen == {0: 100 * lessons}
        lesson_of = (memory.payload['x'][:, 0] // 100).long()
        shares += torch.bincount(lesson_of, minlength=lessons).float() / 60
    shares /= 20
    assert torch.allclose(shares, torch.full((lessons,), 1 / lessons), atol=0.04), shares


def test_reservoir_counts_survive_state_purge_and_clear():
    g = torch.Generator().manual_seed(0)
    memory = ClassBalancedReplay(20)
    memory.update(*_batch(0, 30, 0), generator=g)
    memory.update(*_batch(1, 30, 1000), generator=g)
    memory.update(*_batch(0, 30, 30), generator=g)
    assert memory.seen == {0: 60, 1: 30} and _consistent(memory)
    copy = ClassBalancedReplay(20)
    copy.load_state_dict(memory.state_dict())
    assert copy.seen == memory.seen and torch.equal(copy.labels, memory.labels)
    legacy = {k: v for k, v in memory.state_dict().items() if k != 'seen'}
    old = ClassBalancedReplay(20)
    old.load_state_dict(legacy)  # states written before reservoir counts: what is stored
    assert old.seen == old.class_counts()
    memory.purge(0)
    assert memory.seen == {1: 30}
    memory.clear()
    assert memory.seen == {} and len(memory) == 0


def test_class_balanced_update_keeps_rows_in_the_stored_dtype_and_order():
    # The kept rows are gathered from the memory and the new patterns without concatenating all
    # of them; the result must be what concatenating and then selecting gives.
    g = torch.Generator().manual_seed(3)
    memory = ClassBalancedReplay(12)
    old = {'x': (torch.arange(10, dtype=torch.float32)[:, None] + 1000 * torch.tensor(
        [0, 1] * 5)[:, None]).half()}
    memory.update(old, torch.tensor([0, 1] * 5), generator=g)
    assert memory.payload['x'].dtype == torch.float16
    before = memory.payload['x'].clone()
    memory.update(*_batch(2, 9, 2000), generator=g)
    assert memory.payload['x'].dtype == torch.float16
    assert memory.class_counts() == {0: 4, 1: 4, 2: 4}
    assert _consistent(memory)
    # Old classes keep old rows; class 2 rows come from the new batch, ascending within a class.
    old_rows = {float(v) for v in before[:, 0]}
    for value, label in zip(memory.payload['x'][:, 0].tolist(), memory.labels.tolist()):
        assert (value in old_rows) == (label != 2)
    assert memory.labels.tolist() == sorted(memory.labels.tolist())
    with pytest.raises(ValueError, match='rows of shape'):
        memory.update({'x': torch.zeros(2, 3)}, torch.tensor([0, 0]), generator=g)
