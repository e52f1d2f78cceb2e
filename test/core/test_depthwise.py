import pytest
import torch
import torch.nn.functional as F

from cl_core_ros.core.efficientnet_lite import SameConv2d
from cl_core_ros.core.mobilenet_v1 import Conv2d


@pytest.mark.parametrize('size, kernel, stride', [(4, 5, 1), (8, 5, 2), (4, 3, 1), (8, 3, 2)])
def test_small_depthwise_matches_reference(size, kernel, stride):
    torch.manual_seed(0)
    same = SameConv2d(6, 6, kernel, stride, groups=6, bias=False)
    sym = Conv2d(6, 6, kernel, stride, kernel // 2, groups=6, bias=False)
    x = torch.randn(3, 6, size, size, requires_grad=True)
    for conv, pad in ((same, None), (sym, kernel // 2)):
        if pad is None:  # TF "same": extra pixel at the bottom/right
            total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
            xp = F.pad(x, [total // 2, total - total // 2] * 2)
            ref = F.conv2d(xp, conv.weight, stride=stride, groups=6)
        else:
            ref = F.conv2d(x, conv.weight, stride=stride, padding=pad, groups=6)
        out = conv(x)
        assert torch.allclose(out, ref, atol=1e-5)
        g_out, = torch.autograd.grad(out.square().sum(), conv.weight)
        g_ref, = torch.autograd.grad(ref.square().sum(), conv.weight)
        assert torch.allclose(g_out, g_ref, atol=1e-4)

