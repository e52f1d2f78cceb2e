"""Latent replay memories: (latent, label) pairs captured together when latents are computed.

A pattern is a row of a *payload*: a dict of tensors that share the first dimension (for example
``{'pool': N x D}`` or the fields of a quantised deep latent), and its label is stored in the same
call, never looked up later by index.

Policies:

- :class:`RandomReplay` (AR1* reference): after experience ``i`` (0-based) pick
  ``h = min(M // (i + 1), n_new)`` new patterns at random; fill free slots first, then overwrite
  random occupied slots.
- :class:`ClassBalancedReplay` (the app): merge the memory with the new patterns, give each class
  a quota of ``M // n_classes`` (water-filling: classes with fewer patterns keep them all and their
  unused slots are shared among the classes with surplus; remaining single slots go to the classes
  with the largest surplus, ties to the lower class id). Inside a class the memory is a
  reservoir sample (Vitter 1985) of every pattern the class was ever given: a pattern of the
  k-th lesson stays with the same probability as one of the first, so a second lesson of a known
  object shares the class's slots with the first instead of taking almost all of them. With more
  classes than slots some classes get no slot.
"""

from collections.abc import Mapping

import torch

Payload = dict[str, torch.Tensor]


def _rows(payload: Mapping[str, torch.Tensor]) -> int:
    sizes = {int(v.shape[0]) for v in payload.values()}
    if len(sizes) != 1:
        raise ValueError('payload tensors must share the first dimension')
    return sizes.pop()


def _take(payload: Mapping[str, torch.Tensor], idx: torch.Tensor) -> Payload:
    return {k: v[idx] for k, v in payload.items()}


def _cat(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> Payload:
    if set(a) != set(b):
        raise ValueError(f'payload fields differ: {sorted(a)} vs {sorted(b)}')
    return {k: torch.cat([a[k], b[k].to(a[k].dtype)]) for k in a}


def _gather(old: Mapping[str, torch.Tensor], new: Mapping[str, torch.Tensor], idx: torch.Tensor,
            n_old: int) -> Payload:
    """Return rows ``idx`` of ``old`` followed by ``new`` without building that concatenation.

    Index ``n_old + i`` is row ``i`` of ``new``; ``new`` takes the dtype of ``old`` when there is
    one (as :func:`_cat`). Only the kept rows are copied.
    """
    from_old = idx < n_old
    out = {}
    for key, rows in new.items():
        dtype = old[key].dtype if old else rows.dtype
        kept = torch.empty((idx.shape[0],) + tuple(rows.shape[1:]), dtype=dtype)
        if old:
            kept[from_old] = old[key][idx[from_old]]
        kept[~from_old] = rows[idx[~from_old] - n_old].to(dtype)
        out[key] = kept
    return out


def balanced_quotas(counts: Mapping[int, int], capacity: int) -> dict[int, int]:
    """Return how many patterns each class keeps in a class-balanced memory of ``capacity``."""
    remaining = capacity
    pending = sorted(c for c, n in counts.items() if n > 0)
    quotas = {c: 0 for c in counts}
    while pending:
        share = remaining // len(pending)
        small = [c for c in pending if counts[c] <= share]
        if not small:
            break
        for c in small:
            quotas[c] = counts[c]
            remaining -= counts[c]
        pending = [c for c in pending if c not in small]
    if pending:
        share = remaining // len(pending)
        for c in pending:
            quotas[c] = share
        extra = remaining - share * len(pending)
        for c in sorted(pending, key=lambda c: (share - counts[c], c))[:extra]:
            quotas[c] += 1
    return quotas


class ReplayMemory:
    """Storage shared by the policies: payload rows and their labels."""

    policy = 'base'

    def __init__(self, capacity: int):
        if capacity < 0:
            raise ValueError('capacity must be >= 0')
        self.capacity = capacity
        self.payload: Payload = {}
        self.labels = torch.zeros(0, dtype=torch.long)
        self.experiences = 0

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self) -> dict[int, int]:
        """Return ``{class id: patterns stored}``."""
        ids, counts = torch.unique(self.labels, return_counts=True)
        return {int(c): int(n) for c, n in zip(ids, counts)}

    def items(self) -> tuple[Payload, torch.Tensor]:
        """Return all stored payload rows and labels."""
        return dict(self.payload), self.labels

    def sample(self, n: int, generator: torch.Generator | None = None
               ) -> tuple[Payload, torch.Tensor]:
        """Return ``min(n, len)`` distinct random patterns."""
        idx = torch.randperm(len(self), generator=generator)[:n]
        return _take(self.payload, idx), self.labels[idx]

    def purge(self, class_id: int) -> int:
        """Remove every pattern of ``class_id``; return how many were removed."""
        keep = self.labels != class_id
        removed = int((~keep).sum())
        if removed:
            self.payload = _take(self.payload, keep)
            self.labels = self.labels[keep]
        return removed

    def clear(self) -> None:
        """Remove everything and restart the experience count."""
        self.payload, self.labels, self.experiences = {}, torch.zeros(0, dtype=torch.long), 0

    def replace_all(self, payload: Mapping[str, torch.Tensor], labels: torch.Tensor) -> None:
        """Overwrite the stored rows (used when recomputing latents), keeping the labels' order."""
        if _rows(payload) != labels.shape[0] or labels.shape[0] > self.capacity:
            raise ValueError('payload/labels size mismatch or over capacity')
        self.payload, self.labels = dict(payload), labels.long().clone()

    def update(self, payload: Mapping[str, torch.Tensor], labels: torch.Tensor,
               generator: torch.Generator | None = None, *,
               represents: Mapping[int, int] | None = None) -> None:
        """Add the patterns of one experience according to the policy.

        ``represents`` (class id -> count): the new patterns of a class are a uniform sample of
        that many patterns (a lesson pack's reservoir); policies without per-class
        populations ignore it.
        """
        raise NotImplementedError

    def _check(self, payload: Mapping[str, torch.Tensor], labels: torch.Tensor) -> None:
        if _rows(payload) != labels.shape[0]:
            raise ValueError('one label per pattern expected')
        if self.payload and set(self.payload) != set(payload):
            raise ValueError(f'payload fields differ: {sorted(self.payload)} vs {sorted(payload)}')
        for key, rows in self.payload.items():
            if rows.shape[1:] != payload[key].shape[1:]:
                raise ValueError(f'payload {key!r}: rows of shape '
                                 f'{tuple(payload[key].shape[1:])}, the memory holds '
                                 f'{tuple(rows.shape[1:])}')

    def state_dict(self) -> dict:
        """Return tensors and plain values."""
        return {'policy': self.policy, 'capacity': self.capacity, 'experiences': self.experiences,
                'labels': self.labels.clone(), 'payload': dict(self.payload)}

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict` output."""
        if state['policy'] != self.policy:
            raise ValueError(f'replay policy {state["policy"]!r} != {self.policy!r}')
        labels = state['labels'].long()
        payload = dict(state['payload'])
        if payload and _rows(payload) != labels.shape[0]:
            raise ValueError('replay state: payload and labels differ in length')
        if labels.shape[0] > self.capacity:
            raise ValueError(f'replay state holds {labels.shape[0]} patterns, capacity is '
                             f'{self.capacity}')
        self.payload, self.labels = payload, labels.clone()
        self.experiences = int(state['experiences'])


class RandomReplay(ReplayMemory):
    """AR1* reference policy: h = min(M // (i + 1), n_new) random patterns per experience."""

    policy = 'random'

    def update(self, payload: Mapping[str, torch.Tensor], labels: torch.Tensor,
               generator: torch.Generator | None = None, *,
               represents: Mapping[int, int] | None = None) -> None:
        """Add experience ``self.experiences`` (fill free slots, then overwrite random ones)."""
        self._check(payload, labels)
        n_new = int(labels.shape[0])
        h = min(self.capacity // (self.experiences + 1), n_new)
        self.experiences += 1
        if h == 0:
            return
        chosen = torch.randperm(n_new, generator=generator)[:h]
        new_payload, new_labels = _take(payload, chosen), labels[chosen].long()
        n_fill = min(self.capacity - len(self), h)
        if not self.payload:
            self.payload = {k: v[:0] for k, v in new_payload.items()}
        if n_fill:
            head = torch.arange(n_fill)
            self.payload = _cat(self.payload, _take(new_payload, head))
            self.labels = torch.cat([self.labels, new_labels[:n_fill]])
        n_over = h - n_fill
        if n_over:
            old_slots = len(self) - n_fill
            slots = torch.randperm(old_slots, generator=generator)[:n_over]
            src = torch.arange(n_fill, h)
            self.payload = {k: v.clone() for k, v in self.payload.items()}
            self.labels = self.labels.clone()
            for k in self.payload:
                self.payload[k][slots] = new_payload[k][src].to(self.payload[k].dtype)
            self.labels[slots] = new_labels[src]


class ClassBalancedReplay(ReplayMemory):
    """App policy: per-class quotas of M // n_classes, a reservoir sample inside a class.

    ``seen[c]`` counts the patterns class ``c`` was ever given (the reservoir's population).
    """

    policy = 'class_balanced'

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.seen: dict[int, int] = {}

    def update(self, payload: Mapping[str, torch.Tensor], labels: torch.Tensor,
               generator: torch.Generator | None = None, *,
               represents: Mapping[int, int] | None = None) -> None:
        """Merge the new patterns and re-balance.

        ``represents[c]``: the new patterns of class ``c`` stand for that many patterns (at
        least their number), e.g. an imported reservoir sample; they then keep slots in that
        proportion against the class's earlier patterns, and ``seen[c]`` grows by it.
        """
        self._check(payload, labels)
        self.experiences += 1
        n_old = len(self)
        merged_labels = torch.cat([self.labels, labels.long()])
        counts = {int(c): int(n) for c, n in zip(*torch.unique(merged_labels,
                                                               return_counts=True))}
        quotas = balanced_quotas(counts, self.capacity)
        keep = []
        for c in sorted(quotas):
            members = torch.nonzero(merged_labels == c).flatten()
            old, new = members[members < n_old], members[members >= n_old]
            before = max(self.seen.get(c, 0), old.numel())
            added = new.numel()
            if represents is not None and added:
                added = max(int(represents.get(c, added)), added)
            if quotas[c] < members.numel():
                members = self._reservoir(old, new, before, quotas[c], generator, added)
            keep.append(members)
            self.seen[c] = before + added
        idx = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.long)
        self.payload = _gather(self.payload, payload, idx, n_old)
        self.labels = merged_labels[idx]

    @staticmethod
    def _reservoir(old: torch.Tensor, new: torch.Tensor, before: int, quota: int,
                   generator: torch.Generator | None, added: int | None = None
                   ) -> torch.Tensor:
        """Pick ``quota`` of ``old`` (a uniform sample of ``before`` patterns) and ``new``.

        ``new`` is a uniform sample of ``added`` patterns (default: ``len(new)``, all of them).
        The result is a uniform sample of all ``before + added`` patterns: ``quota`` draws
        without replacement from that population tell how many come from the new patterns.
        """
        population = before + (new.numel() if added is None else added)
        draws = torch.randperm(population, generator=generator)[:quota]
        n_new = int((draws >= before).sum())
        n_old = min(quota - n_new, old.numel())
        n_new = min(quota - n_old, new.numel())
        take_old = old[torch.randperm(old.numel(), generator=generator)[:n_old]]
        take_new = new[torch.randperm(new.numel(), generator=generator)[:n_new]]
        return torch.cat([take_old, take_new]).sort().values

    def purge(self, class_id: int) -> int:
        """Remove every pattern of ``class_id`` and its reservoir count."""
        self.seen.pop(class_id, None)
        return super().purge(class_id)

    def clear(self) -> None:
        """Remove everything, reservoir counts included."""
        super().clear()
        self.seen = {}

    def state_dict(self) -> dict:
        """Return tensors and plain values (``seen`` as a K x 2 tensor of class, count)."""
        state = super().state_dict()
        state['seen'] = torch.tensor(sorted(self.seen.items()), dtype=torch.long).reshape(-1, 2)
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restore from :meth:`state_dict` output (older states: counts of what is stored)."""
        super().load_state_dict(state)
        seen = state.get('seen')
        self.seen = {int(c): int(n) for c, n in seen.tolist()} if seen is not None \
            else self.class_counts()


def make_memory(policy: str, capacity: int) -> ReplayMemory:
    """Return an empty memory of ``policy`` ('random' or 'class_balanced')."""
    if policy == 'random':
        return RandomReplay(capacity)
    if policy == 'class_balanced':
        return ClassBalancedReplay(capacity)
    raise ValueError(f'replay policy: unknown {policy!r}')
