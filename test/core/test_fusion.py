import pytest
from safetensors.torch import save_file
import torch
from torch import nn

from cl_core_ros.core import mobilenet_v1
from cl_core_ros.core.backbone import build_backbone
from cl_core_ros.core.batch_renorm import BatchRenorm2d
from cl_core_ros.core.efficientnet_lite import SameConv2d
from cl_core_ros.core.fusion import fold_norm, inference_copy, norm_affine


def _random_norm(kind: str, channels: int) -> nn.Module:
    torch.manual_seed(1)
    bn = nn.BatchNorm2d(channels, eps=1e-3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 3.0)
    norm = BatchRenorm2d.from_batchnorm(bn) if kind == 'brn' else bn
    return norm.eval()


@pytest.mark.parametrize('kind', ['bn', 'brn'])
@pytest.mark.parametrize('groups, stride, bias', [(1, 1, False), (1, 2, True), (8, 2, False),
                                                  (8, 1, True)])
def test_folded_conv_equals_conv_then_norm(kind, groups, stride, bias):
    torch.manual_seed(0)
    conv = SameConv2d(8, 8, 3, stride, groups=groups, bias=bias)
    norm = _random_norm(kind, 8)
    x = torch.randn(2, 8, 6, 6)
    folded = fold_norm(conv, norm)
    with torch.no_grad():
        assert torch.allclose(folded(x), norm(conv(x)), atol=1e-5)
    assert folded is not conv and (conv.bias is not None) == bias  # the original stays


def test_unfoldable_layer_is_refused():
    with pytest.raises(TypeError, match='GroupNorm'):
        norm_affine(nn.GroupNorm(2, 8))


@pytest.mark.parametrize('name, deep_layer, size', [('efficientnet_lite0', None, 128),
                                                    ('mobilenet_v1', 'conv5_4/dw', 64)])
def test_inference_copy_keeps_outputs_and_originals(tmp_path, name, deep_layer, size):
    weights = None
    if name == 'mobilenet_v1':  # no MobileNetV1 weights exist here: random ones from a file
        state = mobilenet_v1.stages_state_dict(mobilenet_v1.build_stages())
        for key, value in state.items():
            if key.endswith('running_var'):
                value.uniform_(0.5, 1.5)
        weights = str(tmp_path / 'mobilenet.safetensors')
        save_file({k: v.contiguous() for k, v in state.items()}, weights)
    backbone = build_backbone(name, deep_layer, mobilenet_weights=weights)
    lower, upper = backbone.lower.eval(), backbone.upper.eval()
    before = {k: v.clone() for k, v in upper.state_dict().items()}
    fast_lower, fast_upper = inference_copy(lower), inference_copy(upper)
    x = torch.rand(2, 3, size, size) * 4 - 2
    with torch.no_grad():
        deep = lower(x)
        assert torch.allclose(fast_lower(x), deep, atol=1e-3, rtol=1e-3)
        reference = upper(deep)
        for _ in range(2):  # the second pass uses the cached depthwise matrices
            assert torch.allclose(fast_upper(deep), reference, atol=1e-3, rtol=1e-3)
    assert not any(isinstance(m, (nn.BatchNorm2d, BatchRenorm2d)) for m in fast_upper.modules())
    assert any(isinstance(m, BatchRenorm2d) for m in upper.modules())
    assert not any(p.requires_grad for p in fast_upper.parameters())
    assert any(getattr(m, 'frozen_matrices', None) for m in fast_upper.modules())
    assert not any(hasattr(m, 'frozen_matrices') for m in upper.modules())
    for k, v in upper.state_dict().items():
        assert torch.equal(v, before[k]), k
