"""Continual-learning metrics over an accuracy matrix.

``acc[i, j]`` is the accuracy on group ``j`` (a class or a task) measured after experience ``i``;
NaN where group ``j`` had not been learned yet. Definitions (Lopez-Paz & Ranzato 2017; Chaudhry
et al. 2018), with ``t_j`` the experience that first taught group ``j`` and ``T`` the last one:

- average accuracy after ``i``: mean of the non-NaN ``acc[i, :]``;
- forgetting of ``j``: ``max_{t_j <= i < T} acc[i, j] - acc[T, j]`` (groups first learned at T
  are excluded); forgetting = mean over groups;
- backward transfer: mean over groups not first learned at T of ``acc[T, j] - acc[t_j, j]``.
"""

from collections.abc import Mapping, Sequence
import math

import numpy as np


class AccuracyMatrix:
    """Accuracy of every group after every experience."""

    def __init__(self, groups: Sequence[str | int]):
        self.groups = list(groups)
        self._index = {g: k for k, g in enumerate(self.groups)}
        self._rows: list[np.ndarray] = []

    def record(self, accuracies: Mapping[str | int, float]) -> None:
        """Append the accuracies measured after one experience (missing groups: not learned)."""
        row = np.full(len(self.groups), np.nan)
        for g, a in accuracies.items():
            row[self._index[g]] = a
        self._rows.append(row)

    @property
    def matrix(self) -> np.ndarray:
        """Return the experiences x groups array (NaN = not learned yet)."""
        if not self._rows:
            return np.zeros((0, len(self.groups)))
        return np.stack(self._rows)

    def average_accuracy(self, step: int = -1) -> float:
        """Return the mean accuracy over learned groups after experience ``step``."""
        row = self.matrix[step]
        return float(np.nanmean(row)) if np.isfinite(row).any() else math.nan

    def _first_seen(self) -> np.ndarray:
        m = self.matrix
        first = np.full(m.shape[1], -1)
        for j in range(m.shape[1]):
            seen = np.flatnonzero(np.isfinite(m[:, j]))
            if seen.size:
                first[j] = seen[0]
        return first

    def forgetting(self, groups: Sequence[str | int] | None = None) -> float:
        """Return the mean forgetting over groups learned before the last experience.

        Forgetting of a group: its best accuracy before the last experience minus its final
        accuracy (Chaudhry et al. 2018). ``groups`` restricts the mean (default: all).
        """
        m = self.matrix
        if m.shape[0] < 2:
            return math.nan
        last, first = m.shape[0] - 1, self._first_seen()
        chosen = range(m.shape[1]) if groups is None else [self._index[g] for g in groups]
        values = [np.nanmax(m[first[j]:last, j]) - m[last, j]
                  for j in chosen if 0 <= first[j] < last]
        return float(np.mean(values)) if values else math.nan

    def backward_transfer(self) -> float:
        """Return the mean of final minus just-learned accuracy (negative = forgetting)."""
        m = self.matrix
        if m.shape[0] < 2:
            return math.nan
        last, first = m.shape[0] - 1, self._first_seen()
        values = [m[last, j] - m[first[j], j] for j in range(m.shape[1]) if 0 <= first[j] < last]
        return float(np.mean(values)) if values else math.nan

    def state_dict(self) -> dict:
        """Return plain values."""
        return {'groups': list(self.groups),
                'rows': [[None if math.isnan(v) else float(v) for v in r] for r in self._rows]}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict` output."""
        self.groups = list(state['groups'])
        self._index = {g: k for k, g in enumerate(self.groups)}
        self._rows = [np.array([math.nan if v is None else v for v in r], dtype=float)
                      for r in state['rows']]


def accuracy(predicted: Sequence[int], target: Sequence[int]) -> float:
    """Return the fraction of equal entries (NaN for empty input)."""
    predicted, target = np.asarray(predicted), np.asarray(target)
    if predicted.shape != target.shape:
        raise ValueError('predicted and target differ in length')
    return float((predicted == target).mean()) if target.size else math.nan


def per_class_accuracy(predicted: Sequence[int], target: Sequence[int]) -> dict[int, float]:
    """Return ``{class: accuracy on its samples}``."""
    predicted, target = np.asarray(predicted), np.asarray(target)
    return {int(c): float((predicted[target == c] == c).mean()) for c in np.unique(target)}


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Return the area under the ROC curve of a score meant to be higher for ``positive``.

    Equals the probability that a random positive scores above a random negative, ties counting
    one half (the Mann-Whitney U statistic divided by n_pos * n_neg). NaN if a side is empty.
    """
    pos, neg = np.asarray(positive, dtype=float), np.asarray(negative, dtype=float)
    if pos.size == 0 or neg.size == 0:
        return math.nan
    values = np.concatenate([pos, neg])
    order = values.argsort(kind='mergesort')
    ranks = np.empty(values.size)
    sorted_values = values[order]
    start = 0
    while start < values.size:  # average ranks over ties
        end = start
        while end + 1 < values.size and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    u = ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (pos.size * neg.size))
