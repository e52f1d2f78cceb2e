import pytest
import torch
from torch import nn

from cl_core_ros.core.batch_renorm import BatchRenorm2d, replace_batchnorm, set_momentum


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
