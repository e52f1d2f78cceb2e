"""The read-out: class prototypes as a fixed prior plus a CWR* residual head, and open-set floors.

Logits of a pooled feature ``x`` (D) for class ``c``::

    z_c = scale * cos(x, p_c) + <x / |x|, cw_c>

``p_c`` is the mean pooled feature of class ``c`` (:class:`~cl_core_ros.core.inference.
PrototypeBank`), so the first term alone is nearest-class-mean with cosine similarity (NCM,
Mensink et al. 2013; "imprinted" weights, Qi et al. 2018). ``cw_c`` is the CWR* row of
:mod:`cl_core_ros.core.cwr`, trained on the L2-normalised features with the prototype term held
fixed (:func:`cl_core_ros.core.ar1.train_experience` with ``prior``), so the head only learns what
the class means get wrong and the read-out starts from NCM instead of from zero.

Open set (the ``unknown`` verdict), calibrated on the taught data. A frame whose smoothed
similarity to its top-1 prototype is under a floor is unknown (:func:`similarity_floors`):

- **Cross-scene floor** (when ``unknown_quantile`` > 0 and the data gives one): every lesson
  that shows a known object in another scene is a measurement of what the verdict must
  tolerate, the similarities of a taught object's frames, smoothed as at inference, to a
  prototype made elsewhere (:func:`cross_scene_similarities`). The floor is their ``quantile``
  (``unknown_quantile``, e.g. 0.02; 0, the default, keeps the lesson-spread floor): about that
  share of a taught object's frames in an unseen scene falls under it, the same floor for every
  class. A lesson whose frames are as close to the earlier prototype as the earlier lessons'
  own frames are to theirs (median over its 5th-percentile spread) shows no new scene and is
  not counted.
- **Lesson-spread floor** (otherwise): every lesson's frames give a
  spread ``q`` (the 5th percentile of their cosine similarities to the lesson's mean); a class
  keeps the mean ``q_c`` over its lessons, and its floor is ``ratio * q_c``: ``ratio``
  (``unknown_ratio``, 0.53) is how much of its lesson similarity a taught object keeps in a
  scene it was not taught in, measured on the hard stream.

The README gives both operating points on the hard stream.
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


def cross_scene_similarities(features: torch.Tensor, prior_mean: torch.Tensor,
                             prior_spread: float, window: int) -> torch.Tensor | None:
    """Return what one lesson of a known class says about unseen scenes, or None.

    ``features`` (N x D) are the lesson's pooled features in the order they were gathered,
    ``prior_mean`` (D) the class's prototype before the lesson, ``prior_spread`` the mean spread
    of its earlier lessons (:func:`lesson_spread`). Returns the N cosine similarities to
    ``prior_mean``, each averaged with the ``window - 1`` frames before it (as
    ``predict(smooth=True)`` averages), or None when the lesson shows no new scene: their median
    reaches ``prior_spread`` (or the prior is unknown: NaN spread, zero mean).
    """
    if features.shape[0] == 0 or not bool(prior_mean.abs().sum() > 0) \
            or prior_spread != prior_spread:
        return None
    sims = F.normalize(features.float(), dim=1) @ F.normalize(prior_mean.float(), dim=0)
    sums = torch.cumsum(torch.cat([sims.new_zeros(1), sims]), 0)
    ends = torch.arange(1, sims.shape[0] + 1)
    starts = (ends - max(1, int(window))).clamp_min(0)
    smoothed = (sums[ends] - sums[starts]) / (ends - starts)
    if float(smoothed.median()) >= prior_spread:
        return None
    return smoothed


def similarity_floors(spread_floors: torch.Tensor, cross_sorted: torch.Tensor, *,
                      ratio: float, quantile: float, min_samples: int = 20) -> torch.Tensor:
    """Return the similarity floor of every class (capacity; 0 = never unknown by this test).

    ``spread_floors`` (capacity) are the classes' mean lesson spreads (:func:`lesson_floors` at
    ratio 1), ``cross_sorted`` the deployment's cross-scene similarities in ascending order.
    With ``quantile`` > 0 and at least ``min_samples`` of them, every class's floor is their
    ``quantile`` (nearest rank); otherwise ``ratio * spread`` (``ratio`` 0: off).
    """
    n = cross_sorted.shape[0]
    if quantile > 0 and n >= min_samples:
        value = cross_sorted[min(n - 1, int(quantile * (n - 1) + 0.5))]
        return torch.full_like(spread_floors, float(value))
    if ratio <= 0:
        return torch.zeros_like(spread_floors)
    return ratio * spread_floors
