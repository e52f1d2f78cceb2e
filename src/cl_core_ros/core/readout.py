"""The read-out: class prototypes as a fixed prior plus a CWR* residual head, and open-set floors.

Logits of a pooled feature ``x`` (D) for class ``c``::

    z_c = scale * cos(x, p_c) + <x / |x|, cw_c>

``p_c`` is the mean pooled feature of class ``c`` (:class:`~cl_core_ros.core.inference.
PrototypeBank`), so the first term alone is nearest-class-mean with cosine similarity (NCM,
Mensink et al. 2013; "imprinted" weights, Qi et al. 2018). ``cw_c`` is the CWR* row of
:mod:`cl_core_ros.core.cwr`, trained on the L2-normalised features with the prototype term held
fixed (:func:`cl_core_ros.core.ar1.train_experience` with ``prior``), so the head only learns what
the class means get wrong and the read-out starts from NCM instead of from zero.

Open set (the ``unknown`` verdict), calibrated on the taught data: every lesson's frames give a
spread ``q`` (the 5th percentile of their cosine similarities to the lesson's mean); a class
keeps the mean ``q_c`` over its lessons, and a frame whose smoothed similarity to its top-1
prototype is under ``ratio * q_c`` is unknown. A class whose lessons vary more (a turning or
deformable object) gets a lower floor. Spreads are taken per lesson, not over the class's
pooled frames, so a second lesson in another scene does not loosen the floor. ``ratio`` says
how much of its lesson similarity a taught object keeps in a scene it was not taught in (the
README gives its measured operating point on the hard stream).
"""

import torch
import torch.nn.functional as F

LESSON_QUANTILE = 0.05


def prototype_rows(prototypes: torch.Tensor, scale: float) -> torch.Tensor:
    """Return ``scale * p / |p|`` for capacity x D prototypes (zero rows stay zero)."""
    return F.normalize(prototypes.float(), dim=1) * scale


def readout_rows(prototypes: torch.Tensor, residual: torch.Tensor, scale: float) -> torch.Tensor:
    """Return the capacity x D read-out rows ``scale * p / |p| + cw`` (computed once a model)."""
    return prototype_rows(prototypes, scale) + residual


def readout_logits(features: torch.Tensor, rows: torch.Tensor,
                   known: torch.Tensor) -> torch.Tensor:
    """Return N x capacity logits (unknown classes at -inf) for N x D pooled ``features``.

    ``rows`` come from :func:`readout_rows`; ``known`` (capacity, bool) masks the classes.
    """
    unit = F.normalize(features.float(), dim=1)
    return (unit @ rows.T).masked_fill(~known, float('-inf'))


def lesson_spread(features: torch.Tensor) -> float:
    """Return the spread of one lesson (N x D ``features``, N >= 1).

    The spread is the 5th percentile of the frames' cosine similarities to the lesson's mean.
    """
    unit = F.normalize(features.float(), dim=1)
    mean = F.normalize(features.float().mean(0), dim=0)
    return float(torch.quantile(unit @ mean, LESSON_QUANTILE))


def lesson_floors(spreads: torch.Tensor, ratio: float, features: torch.Tensor | None = None,
                  labels: torch.Tensor | None = None) -> torch.Tensor:
    """Return per-class similarity floors (capacity): ``ratio`` times each class's spread.

    ``spreads`` (capacity) holds the mean lesson spread of every class (NaN where none was
    recorded, e.g. a state stored before spreads existed: then the spread is taken from the
    class's stored patterns ``features``/``labels``, N x D and N, as one lesson). Classes without
    either get a floor of 0 (never unknown by this rule).
    """
    spreads = spreads.float().clone()
    if ratio <= 0:
        return torch.zeros_like(spreads)
    missing = torch.isnan(spreads)
    if missing.any() and labels is not None and labels.numel():
        for c in torch.unique(labels).tolist():
            if c < spreads.shape[0] and missing[c]:
                spreads[c] = lesson_spread(features[labels == c])
    return (ratio * spreads).nan_to_num(0.0)
