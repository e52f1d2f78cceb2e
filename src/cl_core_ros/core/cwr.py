"""CWR* (Copy Weights with Re-init, star): the consolidated linear head.

Per class c the head keeps consolidated weights ``cw[c]`` (a bias-free row) and a count
``past[c]`` of patterns already learned. For an experience with classes C:

1. ``cur[c]`` = patterns of c in the experience (new + replayed);
2. training starts from ``cw[c]`` for seen classes and zero rows for new ones; rows outside C
   are not trained (the trainer only scores the columns of C);
3. training (see :mod:`ar1`);
4. ``g`` = the mean of all trained rows (one scalar); ``w = row - g``; a seen class gets
   ``cw = (a * cw + w) / (a + 1)`` with ``a = sqrt(past / cur)``, a new class gets ``cw = w``;
5. ``past[c] += cur[c]``.

The head used for inference is ``cw`` itself. Classes with ``past == 0`` (never seen or
forgotten) are masked with -inf logits, so they can never win the arg-max.
The head is bias-free: the reference consolidates only weights and the mean removal in step 4
plays the role of a shared bias.
"""

from collections.abc import Mapping, Sequence
import math

import torch

_GROWTH = 2


class CWRHead:
    """Consolidated weights and counts of CWR*, with growing capacity."""

    def __init__(self, feature_dim: int, capacity: int = 100):
        if feature_dim < 1 or capacity < 1:
            raise ValueError('feature_dim and capacity must be positive')
        self.feature_dim = feature_dim
        self.cw = torch.zeros(capacity, feature_dim)
        self.past = torch.zeros(capacity, dtype=torch.long)

    @property
    def capacity(self) -> int:
        """Return the number of rows allocated."""
        return int(self.cw.shape[0])

    def ensure_capacity(self, n_classes: int) -> None:
        """Grow (doubling) so that class ids below ``n_classes`` have rows."""
        if n_classes <= self.capacity:
            return
        new = self.capacity
        while new < n_classes:
            new *= _GROWTH
        cw = torch.zeros(new, self.feature_dim)
        cw[:self.capacity] = self.cw
        past = torch.zeros(new, dtype=torch.long)
        past[:self.capacity] = self.past
        self.cw, self.past = cw, past

    def known_mask(self) -> torch.Tensor:
        """Return a bool tensor (capacity) of classes that have consolidated weights."""
        return self.past > 0

    def known_classes(self) -> list[int]:
        """Return the ids of classes with consolidated weights."""
        return torch.nonzero(self.past > 0).flatten().tolist()

    def initial_rows(self, classes: Sequence[int]) -> torch.Tensor:
        """Return the starting rows for ``classes``: cw if seen, else zeros (step 2)."""
        self.ensure_capacity(max(classes) + 1)
        idx = torch.as_tensor(list(classes), dtype=torch.long)
        rows = self.cw[idx].clone()
        rows[self.past[idx] == 0] = 0.0
        return rows

    def consolidate(self, classes: Sequence[int], trained_rows: torch.Tensor,
                    cur_counts: Mapping[int, int] | Sequence[int]) -> None:
        """Fold the trained rows of ``classes`` into cw and add their counts (steps 4-5)."""
        classes = list(classes)
        if len(classes) != trained_rows.shape[0]:
            raise ValueError('one trained row per class expected')
        counts = [int(cur_counts[c]) for c in classes] if isinstance(cur_counts, Mapping) \
            else [int(n) for n in cur_counts]
        if any(n <= 0 for n in counts):
            raise ValueError('every consolidated class needs a positive count')
        self.ensure_capacity(max(classes) + 1)
        rows = trained_rows.detach().float()
        g = rows.mean()
        cw = self.cw.clone()
        past = self.past.clone()
        for row, c, cur in zip(rows, classes, counts):
            w = row - g
            if past[c] > 0:
                a = math.sqrt(int(past[c]) / cur)
                cw[c] = (a * cw[c] + w) / (a + 1.0)
            else:
                cw[c] = w
            past[c] += cur
        self.cw, self.past = cw, past

    def merge_row(self, class_id: int, row: torch.Tensor, count: int) -> None:
        """Fold a consolidated row learned elsewhere (``count`` patterns) into ``class_id``.

        The rule of step 4 with the other learner's row as the trained one: a class without
        weights takes ``row``; a seen class gets ``(a * cw + row) / (a + 1)`` with
        ``a = sqrt(past / count)``; then ``past += count``.
        """
        if count <= 0:
            raise ValueError('a merged row needs a positive count')
        self.ensure_capacity(class_id + 1)
        cw, past = self.cw.clone(), self.past.clone()
        if past[class_id] > 0:
            a = math.sqrt(int(past[class_id]) / count)
            cw[class_id] = (a * cw[class_id] + row.float()) / (a + 1.0)
        else:
            cw[class_id] = row.float()
        past[class_id] += count
        self.cw, self.past = cw, past

    def clear(self, class_id: int) -> None:
        """Forget class ``class_id``: zero its row and count (masked afterwards)."""
        if class_id < self.capacity:
            cw, past = self.cw.clone(), self.past.clone()
            cw[class_id] = 0.0
            past[class_id] = 0
            self.cw, self.past = cw, past

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Return N x capacity logits with unknown classes at -inf."""
        out = features @ self.cw.T
        return out.masked_fill(~self.known_mask(), float('-inf'))

    def copy(self) -> 'CWRHead':
        """Return an independent copy."""
        other = CWRHead(self.feature_dim, self.capacity)
        other.cw, other.past = self.cw.clone(), self.past.clone()
        return other

    def state_dict(self) -> dict:
        """Return tensors and plain values."""
        return {'feature_dim': self.feature_dim, 'cw': self.cw.clone(), 'past': self.past.clone()}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict` output."""
        cw, past = state['cw'].float(), state['past'].long()
        if cw.dim() != 2 or cw.shape[1] != self.feature_dim or past.shape != cw.shape[:1]:
            raise ValueError(f'CWR* head state has shape {tuple(cw.shape)}, expected '
                             f'(capacity, {self.feature_dim})')
        self.cw, self.past = cw.clone(), past.clone()
