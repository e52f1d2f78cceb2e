import copy

import pytest
import torch
from torch import nn

from cl_core_ros.core.batch_renorm import (
    BatchRenorm2d,
    replace_batchnorm,
    set_momentum,
    statistics_frozen,
)


def _bn(mean, var, weight=1.0, bias=0.0):
    bn = nn.BatchNorm2d(1, eps=1e-12)
    bn.running_mean.fill_(mean)
    bn.running_var.fill_(var)
    bn.weight.data.fill_(weight)
    bn.bias.data.fill_(bias)
    return bn


def test_initialised_from_batchnorm_and_eval_uses_running_stats():
    brn = BatchRenorm2d.from_batchnorm(_bn(1.0, 4.0, weight=2.0, bias=0.5))
    assert brn.running_std.item() == pytest.approx(2.0)
    brn.eval()
    x = torch.full((1, 1, 1, 1), 5.0)
    assert brn(x).item() == pytest.approx((5 - 1) / 2 * 2 + 0.5)


def test_train_clips_r_and_d_by_hand():
    # Batch values 0 and 4 -> mu_B = 2, sigma_B = 2; running mu = 0, sigma = 1.
    brn = BatchRenorm2d.from_batchnorm(_bn(0.0, 1.0), momentum=0.1, r_max_limit=1.5,
                                       d_max_limit=0.5, warmup_steps=0)
    brn.eps = 1e-12
    brn.train()
    x = torch.tensor([0.0, 4.0]).view(2, 1, 1, 1)
    y = brn(x).flatten()
    # r = clip(2 / 1, 1/1.5, 1.5) = 1.5 ; d = clip((2 - 0) / 1, -0.5, 0.5) = 0.5
    x_hat = torch.tensor([-1.0, 1.0])
    assert torch.allclose(y, x_hat * 1.5 + 0.5, atol=1e-6)
    # Running statistics: exponential averages of mean and std.
    assert brn.running_mean.item() == pytest.approx(0.1 * 2)
    assert brn.running_std.item() == pytest.approx(1 + 0.1 * (2 - 1))


def test_warmup_starts_as_batchnorm_and_grows_limits():
    brn = BatchRenorm2d(3, r_max_limit=1.25, d_max_limit=0.5, warmup_steps=10)
    assert brn.r_max == 1.0 and brn.d_max == 0.0
    brn.train()
    x = torch.randn(8, 3, 2, 2) * 3 + 1
    y = brn(x)  # r = 1, d = 0: plain batch normalisation
    ref = nn.functional.batch_norm(x, None, None, training=True, eps=brn.eps)
    assert torch.allclose(y, ref, atol=1e-5)
    for _ in range(4):
        brn(x)
    assert brn.r_max == pytest.approx(1.125) and brn.d_max == pytest.approx(0.25)
    for _ in range(10):
        brn(x)
    assert brn.r_max == pytest.approx(1.25) and brn.d_max == pytest.approx(0.5)


def test_r_and_d_carry_no_gradient():
    # r = sigma_B / sigma = 2 (inside the clip range). With r and d constants,
    # sum(y^2) = sum((r * x_hat + d)^2) is the same for every input (sum x_hat = 0 and
    # sum x_hat^2 = N), so its input gradient vanishes; differentiating r would give
    # y = (x - mu) / sigma and a non-zero gradient.
    brn = BatchRenorm2d.from_batchnorm(_bn(0.0, 1.0), r_max_limit=10.0, d_max_limit=0.5,
                                       warmup_steps=0)
    brn.eps = 1e-12
    brn.train()
    x = torch.tensor([0.0, 4.0]).view(2, 1, 1, 1).requires_grad_(True)
    (brn(x) ** 2).sum().backward()
    assert torch.allclose(x.grad, torch.zeros_like(x.grad), atol=1e-5)
    assert brn.weight.grad is not None and brn.bias.grad is not None


def test_replace_every_batchnorm_and_set_momentum():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4),
                          nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)))
    assert replace_batchnorm(model, momentum=0.01) == 2
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    set_momentum(model, 5e-5)
    assert all(m.momentum == 5e-5 for m in model.modules() if isinstance(m, BatchRenorm2d))


def _grads_and_stats(upper, x):
    upper.zero_grad(set_to_none=True)
    upper.train()
    upper(x).pow(2).mean().backward()
    grads = [p.grad.clone() for p in upper.parameters() if p.grad is not None]
    stats = [b.clone() for name, b in upper.named_buffers()
             if 'running' in name or 'steps' in name]
    return grads, stats


def test_recomputed_stages_give_the_same_gradients_and_statistics():
    from cl_core_ros.core.backbone import build_backbone

    backbone = build_backbone('efficientnet_lite0', 'block13')
    x = torch.rand(6, 192, 4, 4, generator=torch.Generator().manual_seed(0)) * 3
    plain, recomputed = backbone.upper, copy.deepcopy(backbone.upper)
    recomputed.stages.recompute = True
    for _ in range(2):  # the second step starts from the statistics the first one left
        grads_a, stats_a = _grads_and_stats(plain, x)
        grads_b, stats_b = _grads_and_stats(recomputed, x)
        assert len(grads_a) == len(grads_b) > 0
        for a, b in zip(grads_a, grads_b):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
        for a, b in zip(stats_a, stats_b):  # updated once per step, not once per pass
            assert torch.equal(a, b)


def test_statistics_frozen_reuses_r_and_d_and_leaves_statistics_alone():
    brn = BatchRenorm2d.from_batchnorm(_bn(0.0, 1.0), momentum=0.5, warmup_steps=0)
    brn.train()
    x = torch.tensor([0.0, 4.0]).view(2, 1, 1, 1)
    first = brn(x)
    mean, std, steps = brn.running_mean.clone(), brn.running_std.clone(), int(brn.steps)
    with statistics_frozen():
        again = brn(x)
    assert torch.equal(first, again)
    assert torch.equal(brn.running_mean, mean) and torch.equal(brn.running_std, std)
    assert int(brn.steps) == steps
