"""MobileNetV1 (width 1.0), the backbone of the latent replay paper, as named stages.

Stage names follow the Caffe model the paper used: ``conv1``, then ``conv2_1/dw``,
``conv2_1/sep``, ... ``conv5_6/sep``, ``conv6/dw``, ``conv6/sep``. Each stage is
conv + BatchNorm + ReLU. At 128x128 input ``conv5_4/dw`` outputs 512x8x8 and the pooled feature
is 1024-d.

No package registry ships MobileNetV1 weights in this layout, so weights come from a user-supplied
file (``.safetensors`` or a torch state_dict readable with ``weights_only=True``) whose keys are
``<stage with '/' replaced by '_'>.conv.weight`` and
``.bn.{weight,bias,running_mean,running_var}``, for example ``conv5_4_dw.conv.weight``;
other keys (a classifier) are ignored.
"""

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from cl_core_ros.core.depthwise import conv_depthwise_matmul, is_depthwise, use_matmul

BN_EPS = 1e-5
FEATURE_DIM = 1024
DEFAULT_DEEP_LAYER = 'conv5_4/dw'

# (name, in channels, out channels, stride) of the depthwise-separable blocks.
_BLOCKS = (
    ('conv2_1', 32, 64, 1), ('conv2_2', 64, 128, 2),
    ('conv3_1', 128, 128, 1), ('conv3_2', 128, 256, 2),
    ('conv4_1', 256, 256, 1), ('conv4_2', 256, 512, 2),
    ('conv5_1', 512, 512, 1), ('conv5_2', 512, 512, 1), ('conv5_3', 512, 512, 1),
    ('conv5_4', 512, 512, 1), ('conv5_5', 512, 512, 1), ('conv5_6', 512, 1024, 2),
    ('conv6', 1024, 1024, 1),
)
STAGE_NAMES = ('conv1', *(f'{n}/{part}' for n, *_ in _BLOCKS for part in ('dw', 'sep')))


class Conv2d(nn.Conv2d):
    """nn.Conv2d that runs depthwise convolutions on tiny maps as batched matmuls."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve (same values as nn.Conv2d)."""
        h, w = x.shape[-2:]

        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        out_h, out_w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if is_depthwise(self) and use_matmul(h, w, out_h, out_w):
            return conv_depthwise_matmul(self, x, p, p, out_h, out_w)
        return super().forward(x)


class ConvBnRelu(nn.Module):
    """Convolution (symmetric padding), BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply conv, norm, activation."""
        return self.act(self.bn(self.conv(x)))


def module_key(stage: str) -> str:
    """Return the state_dict prefix of a stage (``conv5_4/dw`` -> ``conv5_4_dw``)."""
    return stage.replace('/', '_')


def build_stages() -> list[tuple[str, nn.Module]]:
    """Return the network as ``(stage name, module)`` pairs, input to last conv."""
    stages: list[tuple[str, nn.Module]] = [('conv1', ConvBnRelu(3, 32, 3, 2))]
    for name, cin, cout, stride in _BLOCKS:
        stages.append((f'{name}/dw', ConvBnRelu(cin, cin, 3, stride, groups=cin)))
        stages.append((f'{name}/sep', ConvBnRelu(cin, cout, 1)))
    return stages


def stages_state_dict(stages: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """Return the weights of ``stages`` in the file layout this module reads."""
    return {f'{module_key(name)}.{k}': v for name, m in stages for k, v in m.state_dict().items()}


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file or a torch state_dict (``weights_only=True``, no pickle)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f'mobilenet_weights: no such file: {path}')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f'mobilenet_weights: {path} does not hold a state_dict')
    return dict(state)


def load_weights(stages: list[tuple[str, nn.Module]], state: Mapping[str, torch.Tensor]) -> None:
    """Copy ``state`` into ``stages``; raise ValueError naming missing keys or bad shapes."""
    expected = stages_state_dict(stages)
    missing = [k for k in expected if k not in state and not k.endswith('num_batches_tracked')]
    if missing:
        raise ValueError(f'MobileNetV1 weights lack {len(missing)} keys, e.g. {missing[:3]}')
    for k, target in expected.items():
        if k not in state:
            continue
        if tuple(state[k].shape) != tuple(target.shape):
            raise ValueError(f'weight {k}: shape {tuple(state[k].shape)} != {tuple(target.shape)}')
        with torch.no_grad():
            target.copy_(state[k])
