"""AR1* training of one experience with latent replay.

Minibatches mix ``new_per_batch`` new patterns with ``replay_per_batch`` replayed latents,
concatenated on the batch dimension; both enter at the replay layer (the new ones were forwarded
through the frozen ``lower`` once, under no_grad, when they were encoded), so backward stops
there. ``upper`` (None for the pool-level fast path) and the head rows of the experience's classes
are trained with SGD (momentum, weight decay); the logits cover only the experience's classes
(CWR* step 2: other rows are not trained). CWR* consolidation and the replay update are done by
the caller with the returned rows.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
import math

import torch
from torch import nn
import torch.nn.functional as F

from cl_core_ros.core.latents import QuantisedTensor
from cl_core_ros.core.synaptic_intelligence import conv_weights, SynapticIntelligence

Inputs = torch.Tensor | QuantisedTensor


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one experience.

    Attributes:
        epochs: passes over the new patterns.
        new_per_batch: new patterns per minibatch.
        replay_per_batch: replayed patterns per minibatch (fewer if the memory is smaller).
        lr: learning rate of ``upper``.
        head_lr: learning rate of the head rows.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
    """

    epochs: int
    new_per_batch: int
    replay_per_batch: int
    lr: float
    head_lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4


@dataclass
class TrainResult:
    """What one experience's training produced."""

    rows: torch.Tensor
    steps: int
    last_loss: float
    stopped: bool = False


def _fetch(x: Inputs, idx: torch.Tensor) -> torch.Tensor:
    if isinstance(x, QuantisedTensor):
        return x.index(idx).dequantise()
    return x[idx].float()


def _length(x: Inputs | None) -> int:
    return 0 if x is None else len(x)


def train_experience(*, rows: torch.Tensor, classes: Sequence[int], new_x: Inputs,
                     new_y: torch.Tensor, settings: TrainSettings,
                     replay_x: Inputs | None = None, replay_y: torch.Tensor | None = None,
                     upper: nn.Module | None = None, generator: torch.Generator | None = None,
                     si: SynapticIntelligence | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     prior: torch.Tensor | None = None, normalise: bool = False) -> TrainResult:
    """Train ``rows`` (one per class of ``classes``) and ``upper`` in place on one experience.

    The logits of a minibatch are ``z @ (prior + rows).T`` where ``z`` is the feature (from
    ``upper`` when given), L2-normalised when ``normalise``; ``prior`` (len(classes) x D, fixed,
    default zero) holds the class-prototype rows of :mod:`cl_core_ros.core.readout`, so only the
    residual ``rows`` learn.

    Returns the trained rows (a new tensor). When ``should_stop()`` turns True the training stops
    at the next minibatch and the result has ``stopped=True``; ``upper`` may then be partially
    trained, so callers train a copy.
    """
    classes = list(classes)
    lookup = torch.full((max(classes) + 1,), -1, dtype=torch.long)
    lookup[torch.as_tensor(classes)] = torch.arange(len(classes))
    new_cols = lookup[new_y.long()]
    n_new, n_rep = _length(new_x), _length(replay_x)
    rep_cols = lookup[replay_y.long()] if n_rep else torch.zeros(0, dtype=torch.long)
    if (new_cols < 0).any() or (rep_cols < 0).any():
        raise ValueError('every label must be one of the experience classes')
    weights = rows.detach().clone().float().requires_grad_(True)
    fixed = prior.detach().float() if prior is not None else None
    if fixed is not None and fixed.shape != weights.shape:
        raise ValueError(f'prior: shape {tuple(fixed.shape)} != rows {tuple(weights.shape)}')
    groups = [{'params': [weights], 'lr': settings.head_lr}]
    si_params = {}
    if upper is not None:
        upper.train()
        upper_params = [p for p in upper.parameters() if p.requires_grad]
        if upper_params:
            groups.append({'params': upper_params, 'lr': settings.lr})
        if si is not None:
            si_params = conv_weights(upper)
            si.begin_experience(si_params)
    optimiser = torch.optim.SGD(groups, lr=settings.head_lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    per_epoch = math.ceil(n_new / settings.new_per_batch) if n_new else 0
    rep_cursor, rep_order = 0, torch.randperm(n_rep, generator=generator)
    steps, last_loss, stopped = 0, float('nan'), False
    try:
        for _ in range(settings.epochs):
            order = torch.randperm(n_new, generator=generator)
            for b in range(per_epoch):
                if should_stop is not None and should_stop():
                    stopped = True
                    break
                idx_new = order[b * settings.new_per_batch:(b + 1) * settings.new_per_batch]
                parts_x = [_fetch(new_x, idx_new)]
                parts_y = [new_cols[idx_new]]
                take = min(settings.replay_per_batch, n_rep)
                if take:
                    if rep_cursor + take > n_rep:
                        rep_order, rep_cursor = torch.randperm(n_rep, generator=generator), 0
                    idx_rep = rep_order[rep_cursor:rep_cursor + take]
                    rep_cursor += take
                    parts_x.append(_fetch(replay_x, idx_rep))
                    parts_y.append(rep_cols[idx_rep])
                x, y = torch.cat(parts_x), torch.cat(parts_y)
                features = upper(x) if upper is not None else x
                if normalise:
                    features = F.normalize(features, dim=1)
                head = weights if fixed is None else fixed + weights
                loss = F.cross_entropy(features @ head.T, y)
                if si is not None and si_params:
                    loss = loss + si.penalty(si_params)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if si is not None and si_params:
                    si.before_step(si_params)
                optimiser.step()
                if si is not None and si_params:
                    si.after_step(si_params)
                steps += 1
                last_loss = float(loss.detach())
            if stopped:
                break
    finally:
        if upper is not None:
            upper.eval()
    if si is not None and si_params and not stopped:
        si.end_experience(si_params)
    return TrainResult(rows=weights.detach().clone(), steps=steps, last_loss=last_loss,
                       stopped=stopped)


def class_counts(*labels: torch.Tensor) -> dict[int, int]:
    """Return ``{class: patterns}`` over all given label tensors (CWR* ``cur``)."""
    counts: dict[int, int] = {}
    for y in labels:
        if y is None or y.numel() == 0:
            continue
        ids, n = torch.unique(y.long(), return_counts=True)
        for c, k in zip(ids.tolist(), n.tolist()):
            counts[c] = counts.get(c, 0) + k
    return counts
