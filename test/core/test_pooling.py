"""Centre-surround pooling of the last feature map (core.backbone.PooledUpper)."""

import pytest
import torch
from torch import nn

from cl_core_ros.core.backbone import centre_weights, PooledUpper, surround_weights


def test_surround_weights_cover_the_border_ring():
    w = surround_weights(6, 6)
    assert w.sum().item() == pytest.approx(1.0)
    assert (w[1:5, 1:5] == 0).all() and (w[0] > 0).all() and (w[:, -1] > 0).all()
    assert torch.allclose(surround_weights(2, 2), torch.full((2, 2), 0.25))


def test_pooling_subtracts_the_surround_and_clips_at_zero():
    maps = torch.rand(3, 5, 6, 6, generator=torch.Generator().manual_seed(1))
    maps[0, 0] = 1.0  # a channel as strong in the surround as in the middle: pooled to 0
    centre = (maps * centre_weights(6, 6, 0.18)).sum((2, 3))
    ring = (maps * surround_weights(6, 6)).sum((2, 3))
    for weight in (0.0, 0.5, 1.0):
        pooled = PooledUpper([('id', nn.Identity())], 0.18, weight)(maps)
        expected = centre if weight == 0 else (centre - weight * ring).clamp_min(0)
        assert torch.allclose(pooled, expected, atol=1e-6)
    assert PooledUpper([('id', nn.Identity())], 0.18, 1.0)(maps)[0, 0] == 0
    plain = PooledUpper([('id', nn.Identity())], 0.0, 0.0)(maps)
    assert torch.allclose(plain, maps.mean((2, 3)))


def test_a_uniform_scene_pools_to_nothing():
    maps = torch.full((1, 4, 6, 6), 2.0)
    assert PooledUpper([('id', nn.Identity())], 0.18, 1.0)(maps).abs().max() == 0
