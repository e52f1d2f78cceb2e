"""Baselines on the same pooled features and the same training code as the learner.

All strategies see one experience at a time as pooled feature vectors (from the same frozen
backbone) plus labels, and predict class ids from pooled features:

- :class:`NaiveFineTuning`: the head trained on the new patterns only (no replay, no CWR*);
- :class:`ReplayHead`: the head trained on new + replayed pool vectors without CWR*, with the
  memory either ``unbalanced`` (the TF-Lite app: a fixed number of random slots replaced per
  experience) or ``class_balanced`` (the learner's fast-path memory);
- :class:`NearestClassMean`: cosine similarity to running class means (NCM);
- :class:`DeepSLDA`: streaming linear discriminant analysis (Hayes & Kanan 2020): running class
  means and a shared covariance, no SGD;
- :class:`JointTraining`: the head trained from scratch on all data seen so far (upper bound of a
  head-only learner).

The SGD strategies use :func:`cl_core_ros.core.ar1.train_experience` with the learner's fast
settings (8 epochs, 20 new + 100 replayed per minibatch, SGD momentum 0.9, wd 5e-4).
"""

from collections.abc import Mapping

import torch

from cl_core_ros.core.ar1 import train_experience, TrainSettings
from cl_core_ros.core.replay import make_memory, ReplayMemory


def _padded(rows: torch.Tensor, n: int) -> torch.Tensor:
    """Return ``rows`` with zero rows appended up to ``n`` (unchanged when long enough)."""
    if rows.shape[0] >= n:
        return rows
    out = rows.new_zeros((n, *rows.shape[1:]))
    out[:rows.shape[0]] = rows
    return out


class HeadStrategy:
    """A bias-free linear head over pooled features, trained on seen classes only."""

    name = 'head'

    def __init__(self, feature_dim: int, settings: TrainSettings, *, seed: int = 0):
        self.feature_dim = feature_dim
        self.settings = settings
        self.weights = torch.zeros(0, feature_dim)
        self.seen: list[int] = []
        self.generator = torch.Generator().manual_seed(seed)

    def _grow(self, classes) -> None:
        for c in sorted(set(classes) - set(self.seen)):
            self.seen.append(c)
        self.seen.sort()
        needed = max(self.seen) + 1
        if needed > self.weights.shape[0]:
            w = torch.zeros(needed, self.feature_dim)
            w[:self.weights.shape[0]] = self.weights
            self.weights = w

    def _train(self, x: torch.Tensor, y: torch.Tensor, rx: torch.Tensor | None,
               ry: torch.Tensor | None, settings: TrainSettings | None = None) -> None:
        classes = list(self.seen)
        result = train_experience(rows=self.weights[classes], classes=classes, new_x=x, new_y=y,
                                  replay_x=rx, replay_y=ry, settings=settings or self.settings,
                                  generator=self.generator)
        self.weights[classes] = result.rows

    def learn(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Learn one experience."""
        raise NotImplementedError

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Return the arg-max over seen classes."""
        if not self.seen:
            return torch.full((features.shape[0],), -1, dtype=torch.long)
        idx = torch.as_tensor(self.seen)
        return idx[(features @ self.weights[idx].T).argmax(dim=1)]


class NaiveFineTuning(HeadStrategy):
    """Fine-tune the head on each new experience alone."""

    name = 'naive'

    def learn(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Train on the new patterns only."""
        self._grow(labels.tolist())
        self._train(features, labels, None, None)


class FixedReplacementReplay(ReplayMemory):
    """TF-Lite app memory: fill, then overwrite ``per_experience`` random slots each time."""

    policy = 'fixed_replacement'

    def __init__(self, capacity: int, per_experience: int):
        super().__init__(capacity)
        self.per_experience = per_experience

    def update(self, payload: Mapping[str, torch.Tensor], labels: torch.Tensor,
               generator: torch.Generator | None = None) -> None:
        """Append while there is room, then replace random slots (unbalanced)."""
        self._check(payload, labels)
        self.experiences += 1
        n = int(labels.shape[0])
        free = self.capacity - len(self)
        order = torch.randperm(n, generator=generator)
        if free > 0:
            take = order[:free]
            if self.payload:
                self.payload = {k: torch.cat([v, payload[k][take]]) for k, v in
                                self.payload.items()}
            else:
                self.payload = {k: v[take].clone() for k, v in payload.items()}
            self.labels = torch.cat([self.labels, labels[take].long()])
            return
        k = min(self.per_experience, n, self.capacity)
        slots = torch.randperm(len(self), generator=generator)[:k]
        src = order[:k]
        self.payload = {key: v.clone() for key, v in self.payload.items()}
        self.labels = self.labels.clone()
        for key in self.payload:
            self.payload[key][slots] = payload[key][src]
        self.labels[slots] = labels[src].long()


class ReplayHead(HeadStrategy):
    """Head trained on new + replayed pool vectors, no CWR*."""

    def __init__(self, feature_dim: int, settings: TrainSettings, *, memory: str,
                 capacity: int = 500, per_experience: int = 100, seed: int = 0):
        super().__init__(feature_dim, settings, seed=seed)
        self.memory = FixedReplacementReplay(capacity, per_experience) \
            if memory == 'unbalanced' else make_memory(memory, capacity)
        self.name = f'replay_{memory}'

    def learn(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Train on new + replay, then update the memory."""
        payload, ry = self.memory.items()
        self._grow(labels.tolist() + ry.tolist())
        self._train(features, labels, payload.get('pool'), ry)
        self.memory.update({'pool': features}, labels, self.generator)


class JointTraining(HeadStrategy):
    """Upper bound: retrain the head from zero on everything seen so far."""

    name = 'joint'

    def __init__(self, feature_dim: int, settings: TrainSettings, *, seed: int = 0):
        super().__init__(feature_dim, settings, seed=seed)
        self._x: list[torch.Tensor] = []
        self._y: list[torch.Tensor] = []

    def learn(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Store the data and retrain on all of it (minibatches of 120, same epochs)."""
        self._x.append(features)
        self._y.append(labels.long())
        self._grow(labels.tolist())
        self.weights.zero_()
        s = self.settings
        joint = TrainSettings(epochs=s.epochs, new_per_batch=s.new_per_batch + s.replay_per_batch,
                              replay_per_batch=0, lr=s.lr, head_lr=s.head_lr,
                              momentum=s.momentum, weight_decay=s.weight_decay)
        self._train(torch.cat(self._x), torch.cat(self._y), None, None, joint)


class DeepSLDA:
    """Streaming LDA over pooled features with a shared, shrunk covariance."""

    name = 'deep_slda'

    def __init__(self, feature_dim: int, *, shrinkage: float = 1e-4):
        self.feature_dim = feature_dim
        self.shrinkage = shrinkage
        self.means = torch.zeros(0, feature_dim, dtype=torch.float64)
        self.counts = torch.zeros(0, dtype=torch.long)
        self.scatter = torch.zeros(feature_dim, feature_dim, dtype=torch.float64)
        self.total = 0
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def learn(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Merge the experience into class means and the pooled within-class scatter."""
        x = features.double()
        needed = int(labels.max()) + 1
        self.means, self.counts = _padded(self.means, needed), _padded(self.counts, needed)
        for c in torch.unique(labels).tolist():
            xb = x[labels == c]
            nb, na = xb.shape[0], int(self.counts[c])
            mb = xb.mean(0)
            centred = xb - mb
            self.scatter += centred.T @ centred
            if na:
                delta = (mb - self.means[c])[:, None]
                self.scatter += (na * nb / (na + nb)) * (delta @ delta.T)
            self.means[c] = (self.means[c] * na + mb * nb) / (na + nb)
            self.counts[c] = na + nb
        self.total += x.shape[0]
        self._cache = None

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Return the class with the highest discriminant score."""
        seen = torch.nonzero(self.counts > 0).flatten()
        if seen.numel() == 0:
            return torch.full((features.shape[0],), -1, dtype=torch.long)
        if self._cache is None:
            cov = self.scatter / max(self.total, 1)
            eye = torch.eye(self.feature_dim, dtype=torch.float64)
            precision = torch.linalg.inv((1 - self.shrinkage) * cov + self.shrinkage * eye)
            mu = self.means[seen]
            w = precision @ mu.T
            b = -0.5 * (mu * w.T).sum(dim=1)
            self._cache = (w, b)
        w, b = self._cache
        return seen[(features.double() @ w + b).argmax(dim=1)]


class NearestClassMean:
    """Nearest class mean with cosine similarity (Mensink et al. 2013): running class means."""

    name = 'ncm'

    def __init__(self, feature_dim: int):
        self.feature_dim = feature_dim
        self.sums = torch.zeros(0, feature_dim, dtype=torch.float64)
        self.counts = torch.zeros(0, dtype=torch.long)

    def learn(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Add the experience to the class sums."""
        needed = int(labels.max()) + 1
        self.sums, self.counts = _padded(self.sums, needed), _padded(self.counts, needed)
        self.sums.index_add_(0, labels.long(), features.double())
        self.counts.index_add_(0, labels.long(), torch.ones_like(labels, dtype=torch.long))

    def similarities(self, features: torch.Tensor) -> torch.Tensor:
        """Return N x classes cosine similarities (-inf for classes without data)."""
        means = self.sums / self.counts.clamp_min(1)[:, None]
        sims = torch.nn.functional.normalize(features.double(), dim=1) @ \
            torch.nn.functional.normalize(means, dim=1).T
        return sims.masked_fill(self.counts[None, :] == 0, float('-inf'))

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Return the class of the most similar mean (-1 when nothing is known)."""
        if not (self.counts > 0).any():
            return torch.full((features.shape[0],), -1, dtype=torch.long)
        return self.similarities(features).argmax(dim=1)
