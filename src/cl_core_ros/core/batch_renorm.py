"""Batch Renormalization (Ioffe 2017) as used by AR1* on small non-i.i.d. minibatches.

Training normalises with the minibatch statistics corrected by
``r = clip(sigma_B / sigma, 1/r_max, r_max)`` and ``d = clip((mu_B - mu) / sigma, -d_max, d_max)``,
both treated as constants (no gradient). The running mean and the running *std* are exponential
averages with a settable momentum. ``r_max`` grows linearly from 1 to ``r_max_limit`` and ``d_max``
from 0 to ``d_max_limit`` over ``warmup_steps`` training minibatches. Eval uses running statistics.

While :func:`statistics_frozen` is active (the recomputation of a checkpointed forward pass in
backward, see :class:`cl_core_ros.core.backbone.NamedStages`), training-mode layers reuse the r
and d of their last forward and leave the running statistics and the step count alone, so a
stage computed twice in one step gives the same values and updates the statistics once.
"""

import contextlib
import threading

import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

_FROZEN = threading.local()


@contextlib.contextmanager
def statistics_frozen():
    """Within the block (this thread), BRN layers do not update their running statistics."""
    previous = getattr(_FROZEN, 'active', False)
    _FROZEN.active = True
    try:
        yield
    finally:
        _FROZEN.active = previous


def _recompute_contexts():
    return contextlib.nullcontext(), statistics_frozen()


def checkpointed(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Return ``module(x)``, keeping only ``x`` for backward and recomputing the rest there.

    Activation checkpointing (Chen et al. 2016, "Training Deep Nets with Sublinear Memory
    Cost") that is exact for modules holding BRN layers: the recomputation runs under
    :func:`statistics_frozen`.
    """
    return checkpoint(module, x, use_reentrant=False, context_fn=_recompute_contexts)


class BatchRenorm2d(nn.Module):
    """Batch Renormalization over NCHW tensors."""

    def __init__(self, num_features: int, *, eps: float = 1e-5, momentum: float = 0.01,
                 r_max_limit: float = 1.25, d_max_limit: float = 0.5, warmup_steps: int = 100):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.r_max_limit = r_max_limit
        self.d_max_limit = d_max_limit
        self.warmup_steps = warmup_steps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer('running_mean', torch.zeros(num_features))
        self.register_buffer('running_std', torch.ones(num_features))
        self.register_buffer('steps', torch.zeros((), dtype=torch.long))
        self._last_rd: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, **kwargs) -> 'BatchRenorm2d':
        """Build a BRN layer with the affine parameters and statistics of ``bn``."""
        brn = cls(bn.num_features, eps=bn.eps, **kwargs)
        with torch.no_grad():
            if bn.affine:
                brn.weight.copy_(bn.weight)
                brn.bias.copy_(bn.bias)
            if bn.running_mean is not None:
                brn.running_mean.copy_(bn.running_mean)
                brn.running_std.copy_(torch.sqrt(bn.running_var + bn.eps))
        return brn

    @property
    def r_max(self) -> float:
        """Current upper clip of r (grows from 1 to ``r_max_limit``)."""
        return 1.0 + (self.r_max_limit - 1.0) * self._progress()

    @property
    def d_max(self) -> float:
        """Current clip of |d| (grows from 0 to ``d_max_limit``)."""
        return self.d_max_limit * self._progress()

    def _progress(self) -> float:
        if self.warmup_steps <= 0:
            return 1.0
        return min(1.0, int(self.steps) / self.warmup_steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x``; in training also update the running statistics.

        With r and d constant, ``(x_hat * r + d) * weight + bias`` equals batch normalisation
        with minibatch statistics, weight ``weight * r`` and bias ``bias + weight * d``; the
        native batch-norm kernel then gives the same values and gradients, only faster. Under
        :func:`statistics_frozen` (a recomputation) the r and d of this layer's last training
        forward are reused, so the recomputed values equal the first ones exactly.
        """
        if not self.training:
            scale = self.weight / self.running_std
            shift = self.bias - self.running_mean * scale
            return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
        if getattr(_FROZEN, 'active', False) and self._last_rd is not None:
            r, d = self._last_rd
        else:
            r_max, d_max = self.r_max, self.d_max
            with torch.no_grad():
                var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
                std = torch.sqrt(var + self.eps)
                r = (std / self.running_std).clamp(1.0 / r_max, r_max)
                d = ((mean - self.running_mean) / self.running_std).clamp(-d_max, d_max)
                self.running_mean += self.momentum * (mean - self.running_mean)
                self.running_std += self.momentum * (std - self.running_std)
                self.steps += 1
            self._last_rd = (r, d)
        return F.batch_norm(x, None, None, self.weight * r, self.bias + self.weight * d,
                            training=True, momentum=0.0, eps=self.eps)

    def extra_repr(self) -> str:
        """Describe the layer for printing."""
        return (f'{self.num_features}, momentum={self.momentum}, r_max_limit={self.r_max_limit}, '
                f'd_max_limit={self.d_max_limit}, warmup_steps={self.warmup_steps}')


def replace_batchnorm(module: nn.Module, **kwargs) -> int:
    """Replace every BatchNorm2d inside ``module`` by BatchRenorm2d in place; return the count."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, BatchRenorm2d.from_batchnorm(child, **kwargs))
            count += 1
        else:
            count += replace_batchnorm(child, **kwargs)
    return count


def set_momentum(module: nn.Module, momentum: float) -> None:
    """Set the running-statistics momentum of every BRN layer in ``module``."""
    for m in module.modules():
        if isinstance(m, BatchRenorm2d):
            m.momentum = momentum
