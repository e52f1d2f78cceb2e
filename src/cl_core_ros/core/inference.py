"""Inference helpers: class prototypes, temporal smoothing, top-k and the unknown verdict.

Choice for "unknown" (open set). A frame is unknown when any of these holds:

1. no class is known yet;
2. the (smoothed) top-1 softmax probability over the *known* classes is under
   ``unknown_threshold`` (0 by default: off): the read-out is unsure between known classes;
3. the (smoothed) cosine similarity between the pooled feature and the top-1 class prototype
   (the running mean of that class's training features) is under the floor, which
   :func:`cl_core_ros.core.readout.similarity_floors` derives from the taught frames: from the
   lessons that showed a known object in another scene when there are any, else from each
   class's own lesson frames.
   Softmax is always 1.0 with a single known class, so this test is what makes unknown work
   then.

Cosine is taken on the raw pooled features (non-negative after ReLU6 and pooling, no centring, so
it is defined with a single class).
"""

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CROSS_SCENE_CAPACITY = 4096
"""Most cross-scene similarities kept (the newest; 40 lessons of 100 frames)."""


class PrototypeBank:
    """Per-class sums and counts of pooled features (mean = prototype) and lesson spreads.

    The spread of a lesson is the 5th percentile of its frames' cosine similarities to the
    lesson's own mean (:func:`cl_core_ros.core.readout.lesson_spread`); a class keeps the mean
    over its lessons (``spread_sums / spread_counts``).

    Cross-scene similarities: when a known class is taught again in another scene, the smoothed
    similarities of the new lesson's frames to the class's earlier prototype
    (:func:`cl_core_ros.core.readout.cross_scene_similarities`) are kept with their class id,
    at most :data:`CROSS_SCENE_CAPACITY` (the oldest go first).
    """

    def __init__(self, feature_dim: int, capacity: int = 100):
        self.feature_dim = feature_dim
        self.sums = torch.zeros(capacity, feature_dim, dtype=torch.float64)
        self.counts = torch.zeros(capacity, dtype=torch.long)
        self.spread_sums = torch.zeros(capacity, dtype=torch.float64)
        self.spread_counts = torch.zeros(capacity, dtype=torch.long)
        self.cross_sims = torch.zeros(0, dtype=torch.float32)
        self.cross_classes = torch.zeros(0, dtype=torch.long)

    def _ensure(self, n: int) -> None:
        if n <= self.sums.shape[0]:
            return
        size = self.sums.shape[0]
        while size < n:
            size *= 2
        sums = torch.zeros(size, self.feature_dim, dtype=torch.float64)
        sums[:self.sums.shape[0]] = self.sums
        counts = torch.zeros(size, dtype=torch.long)
        counts[:self.counts.shape[0]] = self.counts
        spread_sums = torch.zeros(size, dtype=torch.float64)
        spread_sums[:self.spread_sums.shape[0]] = self.spread_sums
        spread_counts = torch.zeros(size, dtype=torch.long)
        spread_counts[:self.spread_counts.shape[0]] = self.spread_counts
        self.sums, self.counts = sums, counts
        self.spread_sums, self.spread_counts = spread_sums, spread_counts

    def add_spread(self, class_id: int, spread: float) -> None:
        """Record the spread of one lesson of ``class_id``."""
        self._ensure(class_id + 1)
        sums, counts = self.spread_sums.clone(), self.spread_counts.clone()
        sums[class_id] += spread
        counts[class_id] += 1
        self.spread_sums, self.spread_counts = sums, counts

    def add_cross_scene(self, class_id: int, similarities: torch.Tensor) -> None:
        """Keep the cross-scene ``similarities`` (N) of one lesson of ``class_id``."""
        sims = torch.cat([self.cross_sims, similarities.detach().float().flatten()])
        ids = torch.cat([self.cross_classes,
                         torch.full((similarities.numel(),), class_id, dtype=torch.long)])
        self.cross_sims, self.cross_classes = sims[-CROSS_SCENE_CAPACITY:].clone(), \
            ids[-CROSS_SCENE_CAPACITY:].clone()

    def spreads(self) -> torch.Tensor:
        """Return capacity mean lesson spreads (NaN for classes without a recorded lesson)."""
        mean = self.spread_sums / self.spread_counts.clamp_min(1)
        return mean.float().masked_fill(self.spread_counts == 0, float('nan'))

    def merge_class(self, class_id: int, feature_sum: torch.Tensor, count: int,
                    spread_sum: float, spread_count: int) -> None:
        """Add another learner's statistics of ``class_id``.

        ``feature_sum`` (D) sums ``count`` pooled features; ``spread_sum`` sums
        ``spread_count`` lesson spreads.
        """
        self._ensure(class_id + 1)
        sums, counts = self.sums.clone(), self.counts.clone()
        sums[class_id] += feature_sum.double()
        counts[class_id] += int(count)
        spread_sums, spread_counts = self.spread_sums.clone(), self.spread_counts.clone()
        spread_sums[class_id] += float(spread_sum)
        spread_counts[class_id] += int(spread_count)
        self.sums, self.counts = sums, counts
        self.spread_sums, self.spread_counts = spread_sums, spread_counts

    def class_stats(self, class_id: int) -> tuple[torch.Tensor, int, float, int]:
        """Return ``(feature sum (D, float64), count, spread sum, spread count)`` of a class."""
        if class_id >= self.sums.shape[0]:
            return torch.zeros(self.feature_dim, dtype=torch.float64), 0, 0.0, 0
        return (self.sums[class_id].clone(), int(self.counts[class_id]),
                float(self.spread_sums[class_id]), int(self.spread_counts[class_id]))

    def add(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Accumulate ``features`` (N x D) of classes ``labels`` (N)."""
        if labels.numel() == 0:
            return
        self._ensure(int(labels.max()) + 1)
        sums, counts = self.sums.clone(), self.counts.clone()
        sums.index_add_(0, labels.long(), features.double())
        counts.index_add_(0, labels.long(), torch.ones_like(labels, dtype=torch.long))
        self.sums, self.counts = sums, counts

    def rebuild(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Replace the prototypes of the classes in ``labels`` by the means of ``features``.

        Used after a deep update changed ``upper``: the replayed patterns' recomputed features
        stand for their classes. The counts keep their old values (they weigh later additions).
        """
        if labels.numel() == 0:
            return
        fresh = PrototypeBank(self.feature_dim, self.sums.shape[0])
        fresh.add(features, labels)
        sums, counts = self.sums.clone(), self.counts.clone()
        for c in torch.unique(labels).tolist():
            mean = fresh.sums[c] / fresh.counts[c]
            sums[c] = mean * max(int(counts[c]), 1)
            counts[c] = max(int(counts[c]), 1)
        self.sums, self.counts = sums, counts

    def clear(self, class_id: int) -> None:
        """Drop the prototype of ``class_id``."""
        if class_id < self.sums.shape[0]:
            sums, counts = self.sums.clone(), self.counts.clone()
            sums[class_id] = 0
            counts[class_id] = 0
            self.sums, self.counts = sums, counts
            spread_sums, spread_counts = self.spread_sums.clone(), self.spread_counts.clone()
            spread_sums[class_id] = 0
            spread_counts[class_id] = 0
            self.spread_sums, self.spread_counts = spread_sums, spread_counts
        keep = self.cross_classes != class_id
        self.cross_sims, self.cross_classes = self.cross_sims[keep], self.cross_classes[keep]

    def means(self) -> torch.Tensor:
        """Return capacity x D float32 prototypes (zero rows for classes without data)."""
        return (self.sums / self.counts.clamp_min(1)[:, None]).float()

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        """Return N x capacity cosine similarities of features with every prototype."""
        protos = F.normalize(self.means(), dim=1)
        return F.normalize(features.float(), dim=1) @ protos.T

    def copy(self) -> 'PrototypeBank':
        """Return an independent copy."""
        other = PrototypeBank(self.feature_dim, self.sums.shape[0])
        other.sums, other.counts = self.sums.clone(), self.counts.clone()
        other.spread_sums = self.spread_sums.clone()
        other.spread_counts = self.spread_counts.clone()
        other.cross_sims, other.cross_classes = self.cross_sims.clone(), self.cross_classes.clone()
        return other

    def state_dict(self) -> dict:
        """Return tensors and plain values."""
        return {'sums': self.sums.clone(), 'counts': self.counts.clone(),
                'spread_sums': self.spread_sums.clone(),
                'spread_counts': self.spread_counts.clone(),
                'cross_sims': self.cross_sims.clone(), 'cross_classes': self.cross_classes.clone()}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict` (older states: no spreads, no cross-scene data)."""
        sums, counts = state['sums'].double(), state['counts'].long()
        if sums.dim() != 2 or sums.shape[1] != self.feature_dim or counts.shape != sums.shape[:1]:
            raise ValueError('prototype state does not match the feature size')
        spread_sums = state.get('spread_sums', torch.zeros(counts.shape[0])).double()
        spread_counts = state.get('spread_counts', torch.zeros(counts.shape[0])).long()
        if spread_sums.shape != counts.shape or spread_counts.shape != counts.shape:
            raise ValueError('prototype state: lesson spreads do not match the classes')
        cross_sims = state.get('cross_sims', torch.zeros(0)).float().flatten()
        cross_classes = state.get('cross_classes', torch.zeros(0)).long().flatten()
        if cross_sims.shape != cross_classes.shape:
            raise ValueError('prototype state: cross-scene similarities do not match classes')
        self.sums, self.counts = sums.clone(), counts.clone()
        self.spread_sums, self.spread_counts = spread_sums.clone(), spread_counts.clone()
        self.cross_sims = cross_sims[-CROSS_SCENE_CAPACITY:].clone()
        self.cross_classes = cross_classes[-CROSS_SCENE_CAPACITY:].clone()


@dataclass(frozen=True)
class Prediction:
    """The verdict for one frame.

    Attributes:
        class_ids: top-k class ids, best first (empty when nothing is known).
        labels: their names.
        scores: their (smoothed) softmax probabilities over the known classes.
        unknown: True when the frame matches no known class well enough.
        similarity: (smoothed) cosine similarity with the top-1 prototype (0.0 if none).
        model_version: version of the model that produced it.
        floor: the top-1 class's similarity floor (``similarity < floor`` means unknown;
            0.0 when the floor test is off). ``floor - similarity`` is the unknown score.
    """

    class_ids: list[int]
    labels: list[str]
    scores: list[float]
    unknown: bool
    similarity: float
    model_version: int
    floor: float = 0.0


class Smoother:
    """Mean of the last ``window`` probability vectors and similarities (one frame each)."""

    def __init__(self, window: int):
        self.window = window
        self._probs: deque[torch.Tensor] = deque(maxlen=window)
        self._sims: deque[torch.Tensor] = deque(maxlen=window)
        self._key: object = None

    def reset(self) -> None:
        """Forget the history."""
        self._probs.clear()
        self._sims.clear()
        self._key = None

    def push(self, probs: torch.Tensor, sims: torch.Tensor, key: object
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add frames (rows) in order; return their smoothed probabilities and similarities.

        ``probs`` and ``sims`` are N x capacity (similarity with every class prototype).

        ``key`` identifies the model; when it changes the history is dropped, so a frame is
        never averaged with probabilities of another model version.
        """
        if key != self._key:
            self.reset()
            self._key = key
        out_p, out_s = [], []
        for p, s in zip(probs, sims):
            self._probs.append(p)
            self._sims.append(s)
            out_p.append(torch.stack(list(self._probs)).mean(0))
            out_s.append(torch.stack(list(self._sims)).mean(0))
        if not out_p:
            return probs, sims
        return torch.stack(out_p), torch.stack(out_s)


def known_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over finite logits (masked classes get probability 0)."""
    if logits.shape[1] == 0 or not torch.isfinite(logits).any():
        return torch.zeros_like(logits)
    return torch.softmax(logits, dim=1).nan_to_num(0.0)


def decide(probs: torch.Tensor, sims: torch.Tensor, *, known: torch.Tensor,
           names: Mapping[int, str], top_k: int, threshold: float,
           similarity_floors: torch.Tensor | float, model_version: int) -> list[Prediction]:
    """Turn probabilities and prototype similarities (N x capacity) into Predictions.

    A frame is unknown when its top-1 probability is under ``threshold`` or its similarity to
    the top-1 prototype is under that class's floor (``similarity_floors``: capacity floors, or
    one number for every class). Only classes flagged in ``known`` can be reported, even when
    their probability is 0.
    """
    floors = torch.as_tensor(similarity_floors, dtype=torch.float32)
    if floors.dim() == 0:
        floors = floors.expand(known.shape[0])
    k = min(top_k, int(known.sum()))
    out = []
    for p, s in zip(probs, sims):
        if k == 0:
            out.append(Prediction([], [], [], True, 0.0, model_version))
            continue
        _, ids = p.masked_fill(~known, -1.0).topk(k)
        scores = p[ids]
        ids_list = ids.tolist()
        top1, sim = float(scores[0]), float(s[ids_list[0]])
        floor = float(floors[ids_list[0]]) if ids_list[0] < floors.shape[0] else 0.0
        unknown = top1 < threshold or (floor > 0 and sim < floor)
        out.append(Prediction(ids_list, [names[i] for i in ids_list],
                              [float(v) for v in scores], unknown, sim, model_version, floor))
    return out
