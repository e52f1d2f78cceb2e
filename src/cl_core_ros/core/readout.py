"""The read-out: class prototypes as a fixed prior plus a CWR* residual head, and open-set floors.

Logits of a pooled feature ``x`` (D) for class ``c``::

    z_c = scale * cos(x, p_c) + <x / |x|, cw_c>

``p_c`` is the mean pooled feature of class ``c`` (:class:`~cl_core_ros.core.inference.
PrototypeBank`), so the first term alone is nearest-class-mean with cosine similarity (NCM,
Mensink et al. 2013; "imprinted" weights, Qi et al. 2018). ``cw_c`` is the CWR* row of
:mod:`cl_core_ros.core.cwr`, trained on the L2-normalised features with the prototype term held
fixed (:func:`cl_core_ros.core.ar1.train_experience` with ``prior``), so the head only learns what
the class means get wrong and the read-out starts from NCM instead of from zero.

Open set (the ``unknown`` verdict), calibrated on the taught data: for each class the
similarities of its replay patterns (frames of its lessons) to its prototype give a lesson
spread ``q_c`` (their 5th percentile); a frame whose smoothed similarity to its top-1 prototype is
under ``ratio * q_c`` is unknown. A class whose lessons vary more gets a lower floor. ``ratio``
says how much of its lesson similarity a taught object keeps in a scene it was not taught in
(the README gives its measured operating point on the hard stream).
"""

import torch
import torch.nn.functional as F

LESSON_QUANTILE = 0.05


def prototype_rows(prototypes: torch.Tensor, scale: float) -> torch.Tensor:
    """Return ``scale * p / |p|`` for capacity x D prototypes (zero rows stay zero)."""
    return F.normalize(prototypes.float(), dim=1) * scale


def readout_logits(features: torch.Tensor, prototypes: torch.Tensor, residual: torch.Tensor,
                   known: torch.Tensor, scale: float) -> torch.Tensor:
    """Return N x capacity logits (unknown classes at -inf) for N x D pooled ``features``.

    ``prototypes`` (capacity x D, raw means), ``residual`` (capacity x D, CWR* rows) and
    ``known`` (capacity, bool) describe the classes.
    """
    unit = F.normalize(features.float(), dim=1)
    rows = prototype_rows(prototypes, scale) + residual
    return (unit @ rows.T).masked_fill(~known, float('-inf'))


def lesson_floors(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor,
                  ratio: float) -> torch.Tensor:
    """Return per-class similarity floors (capacity) from the taught patterns.

    ``features`` (N x D) and ``labels`` (N) are the stored patterns of the lessons; the floor of
    class ``c`` is ``ratio`` times the 5th percentile of their cosine similarities to the
    prototype of ``c``. Classes without patterns get a floor of 0 (never unknown by this rule).
    """
    floors = torch.zeros(prototypes.shape[0])
    if ratio <= 0 or labels.numel() == 0:
        return floors
    unit = F.normalize(features.float(), dim=1)
    protos = F.normalize(prototypes.float(), dim=1)
    for c in torch.unique(labels).tolist():
        if c >= prototypes.shape[0]:
            continue
        sims = unit[labels == c] @ protos[c]
        floors[c] = ratio * float(torch.quantile(sims, LESSON_QUANTILE))
    return floors
