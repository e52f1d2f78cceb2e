"""Synaptic Intelligence (Zenke et al. 2017) on the conv weights of ``upper``, as in AR1*.

During an experience every optimiser step accumulates the path integral
``T -= grad * (theta_after - theta_before)`` (positive when a step lowers the loss, the sign of
SI). At the end ``omega += T / ((theta_end - theta_start) ** 2 + 1e-7)`` and the importance used
by the penalty is ``F = clip(omega, 0, max_importance)`` (reference 0.001). Later experiences add
``(lambda / 2) * sum F * (theta - theta_star) ** 2`` to the loss, ``theta_star`` being the weights
at the end of the previous experience.
"""

from collections.abc import Mapping

import torch
from torch import nn

_XI = 1e-7


def conv_weights(module: nn.Module) -> dict[str, nn.Parameter]:
    """Return the 4-D (conv) weights of ``module`` by name."""
    return {n: p for n, p in module.named_parameters() if p.dim() == 4}


class SynapticIntelligence:
    """Importance tracking and quadratic penalty for a set of named parameters."""

    def __init__(self, *, strength: float = 1.0, max_importance: float = 0.001):
        self.strength = strength
        self.max_importance = max_importance
        self.omega: dict[str, torch.Tensor] = {}
        self.star: dict[str, torch.Tensor] = {}
        self._path: dict[str, torch.Tensor] = {}
        self._start: dict[str, torch.Tensor] = {}
        self._before: dict[str, torch.Tensor] = {}
        self._grads: dict[str, torch.Tensor] = {}

    def importance(self) -> dict[str, torch.Tensor]:
        """Return F = clip(omega, 0, max_importance) per parameter."""
        return {n: w.clamp(0.0, self.max_importance) for n, w in self.omega.items()}

    def begin_experience(self, params: Mapping[str, nn.Parameter]) -> None:
        """Remember the starting weights and reset the path integral."""
        self._start = {n: p.detach().clone() for n, p in params.items()}
        self._path = {n: torch.zeros_like(p) for n, p in params.items()}

    def penalty(self, params: Mapping[str, nn.Parameter]) -> torch.Tensor:
        """Return ``(lambda / 2) * sum F (theta - theta_star)^2`` (0 before any consolidation)."""
        total = torch.zeros(())
        if not self.star or self.strength == 0:
            return total
        for n, f in self.importance().items():
            if n in params:
                total = total + (f * (params[n] - self.star[n]) ** 2).sum()
        return 0.5 * self.strength * total

    def before_step(self, params: Mapping[str, nn.Parameter]) -> None:
        """Call after backward, before ``optimizer.step()``."""
        self._before = {n: p.detach().clone() for n, p in params.items()}
        self._grads = {n: p.grad.detach().clone() for n, p in params.items()
                       if p.grad is not None}

    def after_step(self, params: Mapping[str, nn.Parameter]) -> None:
        """Call after ``optimizer.step()``: accumulate the path integral."""
        for n, g in self._grads.items():
            self._path[n] -= g * (params[n].detach() - self._before[n])

    def end_experience(self, params: Mapping[str, nn.Parameter]) -> None:
        """Fold the path integral into omega and store the anchor weights."""
        for n, p in params.items():
            delta = p.detach() - self._start[n]
            contrib = self._path[n] / (delta ** 2 + _XI)
            self.omega[n] = self.omega.get(n, torch.zeros_like(p)) + contrib
            self.star[n] = p.detach().clone()

    def state_dict(self) -> dict:
        """Return tensors and plain values."""
        return {'strength': self.strength, 'max_importance': self.max_importance,
                'omega': {n: t.clone() for n, t in self.omega.items()},
                'star': {n: t.clone() for n, t in self.star.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict` output."""
        self.strength = float(state['strength'])
        self.max_importance = float(state['max_importance'])
        self.omega = {n: t.clone() for n, t in state['omega'].items()}
        self.star = {n: t.clone() for n, t in state['star'].items()}
