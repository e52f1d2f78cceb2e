"""The learner facade: AR1* with two-stage latent replay (fast head update, deep consolidation).

- :meth:`Learner.learn` ("learn this object") trains only the CWR* head from pool-level replay,
  in a fraction of a second, and records the experience as pending.
- :meth:`Learner.consolidate` (background) trains ``upper`` (with Batch Renormalization) and the
  head from deep-level replay over the pending experiences, then recomputes the pool-level replay
  vectors and class prototypes with the new ``upper``. It trains copies and swaps them in under a
  short lock, so :meth:`Learner.predict` keeps running from other threads meanwhile.

- :meth:`Learner.export_classes` / :meth:`Learner.import_pack` move what the learner knows
  about some classes to another learner as a lesson pack (:mod:`cl_core_ros.core.lesson_pack`);
  an import follows the rules of a local lesson.

Thread model: ``learn``, ``consolidate``, ``forget``, ``rename``, ``reset``,
``export_classes``, ``import_pack`` and ``load_state_dict`` are serialised by one training
lock; ``predict``/``encode`` only take a short lock to read the current model snapshot.
"""

from collections.abc import Callable, Sequence
import contextlib
import copy
from dataclasses import dataclass, field, replace
import itertools
import logging
import threading
import time

import numpy as np
import torch

from cl_core_ros.core.ar1 import class_counts, train_experience, TrainSettings
from cl_core_ros.core.backbone import (
    build_backbone,
    fingerprint_module,
    NamedStages,
    stage_names,
)
from cl_core_ros.core.batch_renorm import set_momentum
from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.cwr import CWRHead
from cl_core_ros.core.fusion import inference_copy
from cl_core_ros.core.heap import release_free_heap
from cl_core_ros.core.inference import decide, known_softmax, Prediction, PrototypeBank, Smoother
from cl_core_ros.core.labels import LabelRegistry
from cl_core_ros.core.latents import Latents, QuantisedTensor
from cl_core_ros.core.lesson_pack import ClassLesson, LessonPack, now_utc, PackError
from cl_core_ros.core.preprocessing import preprocess, preprocess_batch, Region
from cl_core_ros.core.readout import (
    cross_scene_similarities,
    lesson_floors,
    lesson_spread,
    prototype_rows,
    readout_logits,
    readout_rows,
    similarity_floors,
)
from cl_core_ros.core.replay import ClassBalancedReplay, make_memory, ReplayMemory
from cl_core_ros.core.state_store import signature_differences
from cl_core_ros.core.synaptic_intelligence import SynapticIntelligence

__all__ = ['ImportReport', 'Learner', 'LearnerConfig', 'Latents', 'Prediction', 'UpdateReport']

logger = logging.getLogger(__name__)

STATE_FORMAT = 'cl_core_ros.learner'
STATE_FORMAT_VERSION = 1
_CHUNK = 64
LOCAL = ''  # origin of the lessons a learner was taught itself
CLASH_POLICIES = ('merge', 'rename', 'refuse')
_MAX_IMPORTED_IDS = 10_000


@dataclass(frozen=True)
class UpdateReport:
    """What an update did.

    Attributes:
        kind: 'fast' (learn) or 'deep' (consolidate).
        seconds: wall time of the update (excluding waiting for the training lock).
        cpu_seconds: CPU time the process used meanwhile (all threads; on a shared machine
            ``cpu_seconds / threads`` estimates the wall time on idle cores).
        frames_used: new patterns trained on.
        replayed: patterns in the replay memory used by this update.
        model_version: version after the update.
        class_id, label, is_new_class: the class taught (fast updates).
        changed: whether the model changed.
        stopped: True when ``should_stop`` interrupted a consolidation (nothing changed).
        steps: SGD steps run; loss: last minibatch loss.
        classes_trained: classes of the experience (CWR* set C).
        pending_experiences: experiences still waiting for consolidation.
    """

    kind: str
    seconds: float
    frames_used: int
    replayed: int
    model_version: int
    class_id: int | None = None
    label: str | None = None
    is_new_class: bool = False
    changed: bool = True
    stopped: bool = False
    steps: int = 0
    loss: float = float('nan')
    classes_trained: list[int] = field(default_factory=list)
    pending_experiences: int = 0
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class ImportReport:
    """What an import of a lesson pack did.

    Attributes:
        pack_id: the pack's sha256 content address.
        imported: one ``(name in the pack, label here, class id, action)`` per class taken in;
            action is 'new', 'renamed' (a new class under another label), 'merged' (into an
            existing class) or 'updated' (a newer revision of a class known only from the same
            origin replaced the older one).
        skipped: ``(name in the pack, reason)`` of classes left out (already known at this or a
            newer revision).
        duplicate: the pack was imported before (nothing changed).
        reencoded: the pool vectors were recomputed from the deep latents (the pack's
            ``upper`` differs from this learner's).
        model_version: version after the import.
        seconds: wall time.
    """

    pack_id: str
    imported: list[tuple[str, str, int, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicate: bool = False
    reencoded: bool = False
    model_version: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        """Whether the learner changed."""
        return bool(self.imported)


@dataclass(frozen=True)
class _Snapshot:
    """Everything ``predict`` reads; replaced as a whole, never mutated."""

    upper: torch.nn.Module  # frozen inference copy (core.fusion) of the current upper
    upper_version: int
    rows: torch.Tensor  # read-out rows: scaled unit prototypes + CWR* residual (core.readout)
    known: torch.Tensor
    unit_prototypes: torch.Tensor  # normalised class means (capacity x D)
    spread_floors: torch.Tensor  # per-class lesson spreads (floors at unknown_ratio 1)
    cross_sorted: torch.Tensor  # cross-scene similarities, ascending (core.readout)
    names: dict[int, str]
    model_version: int


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run the block with ``n`` intra-op threads in the calling thread (None: unchanged)."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def signature_defaults(backbone: str) -> dict:
    """Return the signature values of states (and packs) stored before a field existed.

    Those were made with global average pooling (``centre_sigma`` and ``surround_weight`` 0)
    and the feature after the backbone's last stage (``feature_layer``).
    """
    return {'centre_sigma': 0.0, 'surround_weight': 0.0,
            'feature_layer': stage_names(backbone)[-1]}


TUNABLE = frozenset({'top_k', 'smoothing_window', 'unknown_threshold', 'unknown_ratio',
                     'unknown_quantile', 'fast_epochs', 'deep_epochs'})
"""LearnerConfig fields that :meth:`Learner.tune` changes on a running learner."""


class Learner:
    """Continual object learner (see the module docstring)."""

    def __init__(self, config: LearnerConfig | None = None):
        self.config = (config or LearnerConfig()).validate()
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)
        c = self.config
        self._backbone = build_backbone(
            c.backbone, c.resolved_deep_layer, feature_layer=c.resolved_feature_layer,
            mobilenet_weights=c.mobilenet_weights,
            brn_kwargs={'momentum': c.brn_momentum_first, 'r_max_limit': c.brn_r_max,
                        'd_max_limit': c.brn_d_max, 'warmup_steps': c.brn_warmup_steps},
            centre_sigma=c.centre_sigma, surround_weight=c.surround_weight)
        self._lower = inference_copy(self._backbone.lower)  # frozen for good
        self.feature_dim = self._backbone.feature_dim
        self.deep_shape = self._backbone.deep_shape(c.input_size)
        self._pristine_upper = self._backbone.upper.eval()
        self._upper_ids = itertools.count(1)
        self._train_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._smooth_lock = threading.Lock()
        self._smoother = Smoother(c.smoothing_window)
        self.labels = LabelRegistry(max_classes=c.max_classes, max_length=c.max_label_length)
        self.load_notes: list[str] = []  # what loading the last state changed (labels)
        self._inference_upper: tuple = (None, None)  # (upper, its frozen inference copy)
        self._upper_print: tuple = (None, '')  # (upper, its fingerprint)
        self._init_knowledge()
        # torch imports its compiler stack (~1.5 s) when the first optimiser is built: do it
        # now rather than inside the first lesson a user waits for.
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

    # ------------------------------------------------------------------ state of knowledge
    def _init_knowledge(self) -> None:
        c = self.config
        self._upper = copy.deepcopy(self._pristine_upper)
        self._upper_version = 0  # 0 always denotes the pretrained upper
        self._head = CWRHead(self.feature_dim, c.initial_capacity)
        self._prototypes = PrototypeBank(self.feature_dim, c.initial_capacity)
        self._fast_memory: ReplayMemory = ClassBalancedReplay(c.fast_buffer_size)
        self._deep_memory = make_memory(c.deep_replay_policy, c.deep_buffer_size)
        self._pending: list[tuple[int, QuantisedTensor]] = []
        self._consolidations = 0
        self._si = SynapticIntelligence(strength=c.si_strength,
                                        max_importance=c.si_max_importance) if c.use_si else None
        self._generator = torch.Generator().manual_seed(c.seed)
        # where each class's knowledge came from: {class id: {(origin, name there): revision}}
        self._sources: dict[int, dict[tuple[str, str], int]] = {}
        self._imported: list[str] = []  # content addresses of the packs imported
        self.labels.clear()
        self.model_version = 0
        self._publish(bump=False)

    def _publish(self, *, bump: bool = True) -> None:
        """Swap in a new prediction snapshot (short lock)."""
        if bump:
            self.model_version += 1
        if self._inference_upper[0] is not self._upper:  # modules are replaced, never mutated
            self._inference_upper = (self._upper, inference_copy(self._upper))
        prototypes = self._prototypes.means()
        payload, labels = self._fast_memory.items()
        floors = lesson_floors(self._prototypes.spreads(), 1.0, payload.get('pool'), labels)
        capacity = self._head.capacity
        if prototypes.shape[0] < capacity:  # the head grew first: pad to its rows
            prototypes = torch.cat([prototypes, prototypes.new_zeros(
                capacity - prototypes.shape[0], prototypes.shape[1])])
            floors = torch.cat([floors, floors.new_zeros(capacity - floors.shape[0])])
        snapshot = _Snapshot(
            upper=self._inference_upper[1], upper_version=self._upper_version,
            rows=readout_rows(prototypes[:capacity], self._head.cw, self.config.readout_scale),
            known=self._head.known_mask(),
            unit_prototypes=torch.nn.functional.normalize(prototypes[:capacity], dim=1),
            spread_floors=floors[:capacity],
            cross_sorted=torch.sort(self._prototypes.cross_sims).values,
            names=dict(self.labels.items()), model_version=self.model_version)
        with self._model_lock:
            self._snapshot = snapshot

    def _current(self) -> _Snapshot:
        with self._model_lock:
            return self._snapshot

    # ------------------------------------------------------------------ frames and latents
    def preprocess(self, image: np.ndarray, region: Region | None = None) -> torch.Tensor:
        """Crop (centre square or ``region``), resize and normalise one HxWx3/HxW uint8 image."""
        return preprocess(image, self.config.input_size, self.config.backbone, region)

    def preprocess_batch(self, images) -> torch.Tensor:
        """Preprocess several images (centre crop) into an Nx3xSxS tensor."""
        return preprocess_batch(images, self.config.input_size, self.config.backbone)

    def _check_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 3:
            images = images[None]
        s = self.config.input_size
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, s, s):
            raise ValueError(f'images: expected Bx3x{s}x{s}, got {tuple(images.shape)}')
        return images.float()

    def _deep_float(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self._lower(images[i:i + _CHUNK])
                              for i in range(0, images.shape[0], _CHUNK)]) \
                if images.shape[0] else torch.zeros(0, *self.deep_shape)

    def _record_cross_scene(self, prototypes: PrototypeBank, class_id: int,
                            pool: torch.Tensor) -> None:
        """Keep what a lesson of an already known class says about unseen scenes.

        Called before the lesson's ``pool`` (N x D) is added to ``prototypes``; a new class or a
        lesson in the same scene records nothing (:func:`cross_scene_similarities`).
        """
        feature_sum, count, spread_sum, spread_count = prototypes.class_stats(class_id)
        if count == 0 or spread_count == 0:
            return
        sims = cross_scene_similarities(pool, feature_sum / count,
                                        spread_sum / spread_count, self.config.smoothing_window)
        if sims is not None:
            prototypes.add_cross_scene(class_id, sims)

    @staticmethod
    def _pool(upper: torch.nn.Module, deep: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if deep.shape[0] == 0:
                return torch.zeros(0, 0)
            return torch.cat([upper(deep[i:i + _CHUNK].float())
                              for i in range(0, deep.shape[0], _CHUNK)])

    def encode(self, images: torch.Tensor) -> Latents:
        """Compute latents of Bx3xSxS frames (no_grad): quantised deep latents + pool vectors."""
        images = self._check_images(images)
        snap = self._current()
        deep = self._deep_float(images)
        pool = self._pool(snap.upper, deep) if len(deep) else torch.zeros(0, self.feature_dim)
        return Latents(QuantisedTensor.quantise(deep, self.config.replay_dtype), pool,
                       snap.upper_version)

    def encode_images(self, images) -> Latents:
        """Preprocess and encode a sequence of uint8 images."""
        return self.encode(self.preprocess_batch(images))

    # ------------------------------------------------------------------ inference
    def predict(self, images: torch.Tensor, *, smooth: bool = False) -> list[Prediction]:
        """Return one Prediction per frame of Bx3xSxS ``images`` (frames in time order).

        With ``smooth`` every frame's probabilities are averaged with the previous frames'
        (window ``smoothing_window``; the history restarts when the model version changes).
        """
        images = self._check_images(images)
        snap = self._current()
        features = self._pool(snap.upper, self._deep_float(images)) if len(images) \
            else torch.zeros(0, self.feature_dim)
        return self._decide(snap, features, smooth)

    def predict_latents(self, latents: Latents, *, smooth: bool = False) -> list[Prediction]:
        """Predict from latents (pool vectors reused when computed by the current ``upper``)."""
        snap = self._current()
        features = latents.pool if latents.upper_version == snap.upper_version \
            else self._pool(snap.upper, latents.deep.dequantise())
        return self._decide(snap, features, smooth)

    def _decide(self, snap: _Snapshot, features: torch.Tensor, smooth: bool
                ) -> list[Prediction]:
        n = features.shape[0]
        if n == 0:
            return []
        probs = known_softmax(readout_logits(features, snap.rows, snap.known))
        sims = torch.nn.functional.normalize(features.float(), dim=1) @ snap.unit_prototypes.T
        if smooth:
            with self._smooth_lock:
                probs, sims = self._smoother.push(probs, sims, snap.model_version)
        c = self.config
        floors = similarity_floors(snap.spread_floors, snap.cross_sorted,
                                   ratio=c.unknown_ratio, quantile=c.unknown_quantile)
        return decide(probs, sims, known=snap.known, names=snap.names, top_k=c.top_k,
                      threshold=c.unknown_threshold, similarity_floors=floors,
                      model_version=snap.model_version)

    def tune(self, **changes) -> LearnerConfig:
        """Change settings that take effect while the learner runs; return the new config.

        Accepted (see :data:`TUNABLE`): ``top_k``, ``smoothing_window`` (restarts the average),
        ``unknown_threshold`` and ``unknown_ratio`` from the next frame on, ``fast_epochs`` and
        ``deep_epochs`` from the next update on. Raises ValueError for another field or an
        invalid value (nothing changes then). Safe to call while frames are predicted and while
        an update runs (that update keeps the settings it started with).
        """
        other = sorted(set(changes) - TUNABLE)
        if other:
            raise ValueError(f'cannot change {", ".join(other)} of a running learner '
                             f'(only {", ".join(sorted(TUNABLE))})')
        config = replace(self.config, **changes).validate()
        with self._smooth_lock:
            if config.smoothing_window != self.config.smoothing_window:
                self._smoother = Smoother(config.smoothing_window)
            self.config = config  # read once per frame/update: a frame sees old or new
        logger.info('settings changed: %s', ', '.join(f'{k}={v!r}' for k, v in changes.items()))
        return config

    def reset_smoothing(self) -> None:
        """Forget the smoothing history (e.g. when the camera view changes)."""
        with self._smooth_lock:
            self._smoother.reset()

    # ------------------------------------------------------------------ learning
    @property
    def pending_experiences(self) -> int:
        """Experiences learned by ``learn`` and not yet consolidated."""
        return len(self._pending)

    @property
    def consolidations(self) -> int:
        """Completed deep updates."""
        return self._consolidations

    def _check_latents(self, latents: Latents) -> None:
        if not isinstance(latents, Latents) or len(latents) == 0:
            raise ValueError('latents: need at least one frame')
        if tuple(latents.deep.data.shape[1:]) != tuple(self.deep_shape):
            raise ValueError(f'latents: deep shape {tuple(latents.deep.data.shape[1:])} != '
                             f'{tuple(self.deep_shape)} of this learner')
        if latents.pool.shape != (len(latents), self.feature_dim):
            raise ValueError(f'latents: pool shape {tuple(latents.pool.shape)} does not match')

    def learn(self, label: str, latents: Latents) -> UpdateReport:
        """Fast update: teach ``label`` from ``latents`` (head only, pool-level replay).

        A new label creates a class, a known one adds to it. The experience is also recorded as
        pending for :meth:`consolidate`. Raises ValueError for a bad label, too many classes or
        latents of another shape.
        """
        self._check_latents(latents)
        c = self.config
        with self._train_lock, _torch_threads(c.fast_num_threads):
            start, cpu_start = time.perf_counter(), time.process_time()
            name = self.labels.validate(label)
            class_id = self.labels.get(name)
            is_new = class_id is None
            if is_new:
                class_id = self.labels.add(name)
            try:
                deep = latents.deep
                if deep.dtype != c.replay_dtype:
                    deep = QuantisedTensor.quantise(deep.dequantise(), c.replay_dtype)
                pool = latents.pool if latents.upper_version == self._upper_version \
                    else self._pool(self._upper, latents.deep.dequantise())
                new_y = torch.full((len(latents),), class_id, dtype=torch.long)
                replay, replay_y = self._fast_memory.items()
                classes = sorted(set(replay_y.tolist()) | {class_id})
                head = self._head.copy()
                prototypes = self._prototypes.copy()
                self._record_cross_scene(prototypes, class_id, pool)
                prototypes.add(pool, new_y)
                prototypes.add_spread(class_id, lesson_spread(pool))
                settings = TrainSettings(
                    epochs=c.fast_epochs, new_per_batch=c.fast_new_per_batch,
                    replay_per_batch=c.fast_replay_per_batch, lr=c.fast_lr, head_lr=c.fast_lr,
                    momentum=c.momentum, weight_decay=c.weight_decay)
                result = train_experience(
                    rows=head.initial_rows(classes), classes=classes, new_x=pool, new_y=new_y,
                    replay_x=replay.get('pool'), replay_y=replay_y, settings=settings,
                    generator=self._generator, normalise=True,
                    prior=self._prior(prototypes, classes))
                head.consolidate(classes, result.rows, class_counts(new_y, replay_y))
                self._fast_memory.update({'pool': pool}, new_y, self._generator)
                self._prototypes = prototypes
            except BaseException:
                if is_new:
                    self.labels.remove(name)
                raise
            self._head = head
            self._pending.append((class_id, deep))
            self._sources.setdefault(class_id, {})[LOCAL, LOCAL] = time.time_ns()
            self._publish()
            seconds = time.perf_counter() - start
            logger.info('learned %r (class %d, %s, %d frames) in %.3f s; model version %d',
                        name, class_id, 'new' if is_new else 'known', len(latents), seconds,
                        self.model_version)
            return UpdateReport(
                kind='fast', seconds=seconds, frames_used=len(latents), replayed=len(replay_y),
                model_version=self.model_version, class_id=class_id, label=name,
                is_new_class=is_new, steps=result.steps, loss=result.last_loss,
                classes_trained=classes, pending_experiences=len(self._pending),
                cpu_seconds=time.process_time() - cpu_start)

    def learn_experience(self, lessons: Sequence[tuple[str, Latents]]) -> UpdateReport:
        """Fast update of one multi-class experience: every lesson is learned jointly.

        ``lessons`` is ``[(label, latents), ...]`` (latents of one label given twice are
        joined). Unlike one :meth:`learn` per label, the head trains once, on minibatches that
        mix the frames of all the experience's classes with the replayed ones, and CWR*
        consolidates every class of the experience together, as the CORe50 batches (NICv2's
        first batch of 10 objects, NICv2-79's 5 object-sessions) are learned by the reference
        method. Each label's frames are recorded as pending for :meth:`consolidate`. A single
        lesson gives what :meth:`learn` gives.

        Returns one report (``class_id``/``label`` of the first lesson, ``is_new_class`` True
        if any class was new, ``frames_used`` of all lessons). Raises ValueError for no
        lessons, a bad label, too many classes or latents of another shape; nothing changes
        then.
        """
        grouped: dict[str, list[Latents]] = {}
        for label, latents in lessons:
            self._check_latents(latents)
            grouped.setdefault(self.labels.validate(label), []).append(latents)
        if not grouped:
            raise ValueError('lessons: need at least one (label, latents)')
        c = self.config
        with self._train_lock, _torch_threads(c.fast_num_threads):
            start, cpu_start = time.perf_counter(), time.process_time()
            added: list[str] = []
            try:
                ids, pools, deeps, new = [], [], [], []
                for name, parts in grouped.items():
                    class_id = self.labels.get(name)
                    if class_id is None:
                        class_id = self.labels.add(name)
                        added.append(name)
                    latents = Latents.cat(parts)
                    deep = latents.deep
                    if deep.dtype != c.replay_dtype:
                        deep = QuantisedTensor.quantise(deep.dequantise(), c.replay_dtype)
                    pool = latents.pool if latents.upper_version == self._upper_version \
                        else self._pool(self._upper, latents.deep.dequantise())
                    ids.append(class_id)
                    pools.append(pool)
                    deeps.append(deep)
                    new.append(torch.full((len(latents),), class_id, dtype=torch.long))
                pool, new_y = torch.cat(pools), torch.cat(new)
                replay, replay_y = self._fast_memory.items()
                classes = sorted(set(replay_y.tolist()) | set(ids))
                head = self._head.copy()
                prototypes = self._prototypes.copy()
                for class_id, class_pool in zip(ids, pools):
                    self._record_cross_scene(prototypes, class_id, class_pool)
                prototypes.add(pool, new_y)
                for class_id, class_pool in zip(ids, pools):
                    prototypes.add_spread(class_id, lesson_spread(class_pool))
                settings = TrainSettings(
                    epochs=c.fast_epochs, new_per_batch=c.fast_new_per_batch,
                    replay_per_batch=c.fast_replay_per_batch, lr=c.fast_lr, head_lr=c.fast_lr,
                    momentum=c.momentum, weight_decay=c.weight_decay)
                result = train_experience(
                    rows=head.initial_rows(classes), classes=classes, new_x=pool, new_y=new_y,
                    replay_x=replay.get('pool'), replay_y=replay_y, settings=settings,
                    generator=self._generator, normalise=True,
                    prior=self._prior(prototypes, classes))
                head.consolidate(classes, result.rows, class_counts(new_y, replay_y))
                self._fast_memory.update({'pool': pool}, new_y, self._generator)
                self._prototypes = prototypes
            except BaseException:
                for name in added:
                    self.labels.remove(name)
                raise
            self._head = head
            self._pending.extend(zip(ids, deeps))
            self._publish()
            seconds = time.perf_counter() - start
            logger.info('learned %d classes jointly (%s; %d new) from %d frames in %.3f s; '
                        'model version %d', len(ids), ', '.join(grouped), len(added),
                        len(new_y), seconds, self.model_version)
            first = next(iter(grouped))
            return UpdateReport(
                kind='fast', seconds=seconds, frames_used=len(new_y), replayed=len(replay_y),
                model_version=self.model_version, class_id=ids[0], label=first,
                is_new_class=bool(added), steps=result.steps, loss=result.last_loss,
                classes_trained=classes, pending_experiences=len(self._pending),
                cpu_seconds=time.process_time() - cpu_start)

    def _prior(self, prototypes: PrototypeBank, classes: list[int]) -> torch.Tensor:
        """Return the fixed prototype rows of ``classes`` (see :mod:`core.readout`)."""
        means = prototypes.means()
        rows = torch.zeros(len(classes), self.feature_dim)
        inside = [k for k, cid in enumerate(classes) if cid < means.shape[0]]
        if inside:
            ids = torch.as_tensor([classes[k] for k in inside])
            rows[inside] = prototype_rows(means[ids], self.config.readout_scale)
        return rows

    def consolidate(self, *, should_stop: Callable[[], bool] | None = None) -> UpdateReport:
        """Deep update over the pending experiences plus deep-level replay.

        Trains copies of ``upper`` (BRN) and the head, consolidates with CWR*, updates the deep
        memory, recomputes pool-level replay vectors and prototypes, then swaps everything in.
        ``predict`` keeps working meanwhile. If ``should_stop()`` becomes True the update is
        abandoned and nothing changes (``stopped=True`` in the report). The heap pages that the
        training freed are handed back to the system afterwards (:mod:`~cl_core_ros.core.heap`).
        """
        try:
            return self._consolidate(should_stop)
        finally:
            release_free_heap()

    def _consolidate(self, should_stop: Callable[[], bool] | None) -> UpdateReport:
        c = self.config
        with self._train_lock:
            start, cpu_start = time.perf_counter(), time.process_time()
            if not self._pending:
                return UpdateReport(kind='deep', seconds=0.0, frames_used=0, replayed=0,
                                    model_version=self.model_version, changed=False)
            new_deep = QuantisedTensor.cat([d for _, d in self._pending])
            new_y = torch.cat([torch.full((len(d),), cid, dtype=torch.long)
                               for cid, d in self._pending])
            payload, replay_y = self._deep_memory.items()
            replay = QuantisedTensor(payload['data'], payload['lo'], payload['scale']) \
                if payload else None
            classes = sorted(set(new_y.tolist()) | set(replay_y.tolist()))
            first = self._consolidations == 0
            upper = copy.deepcopy(self._upper)
            if isinstance(getattr(upper, 'stages', None), NamedStages):
                upper.stages.recompute = c.deep_recompute
            set_momentum(upper, c.brn_momentum_first if first else c.brn_momentum)
            n_new, n_rep = len(new_y), len(replay_y)
            new_per_batch = max(1, round(c.deep_batch_size * n_new / (n_new + n_rep)))
            settings = TrainSettings(
                epochs=c.deep_epochs, new_per_batch=new_per_batch,
                replay_per_batch=c.deep_batch_size - new_per_batch,
                lr=c.deep_lr_first if first else c.deep_lr, head_lr=c.deep_head_lr,
                momentum=c.momentum, weight_decay=c.weight_decay)
            si = None
            if self._si is not None:
                si = SynapticIntelligence()
                si.load_state_dict(self._si.state_dict())
            generator = torch.Generator()
            generator.set_state(self._generator.get_state())
            head = self._head.copy()
            result = train_experience(
                rows=head.initial_rows(classes), classes=classes, new_x=new_deep, new_y=new_y,
                replay_x=replay, replay_y=replay_y, settings=settings, upper=upper,
                generator=generator, si=si, should_stop=should_stop, normalise=True,
                prior=self._prior(self._prototypes, classes))
            if result.stopped:
                logger.info('consolidation stopped on request after %d steps', result.steps)
                return UpdateReport(
                    kind='deep', seconds=time.perf_counter() - start, frames_used=n_new,
                    replayed=n_rep, model_version=self.model_version, changed=False,
                    stopped=True, steps=result.steps, classes_trained=classes,
                    pending_experiences=len(self._pending),
                    cpu_seconds=time.process_time() - cpu_start)
            upper.eval()
            head.consolidate(classes, result.rows, class_counts(new_y, replay_y))
            deep_memory = make_memory(c.deep_replay_policy, c.deep_buffer_size)
            deep_memory.load_state_dict(self._deep_memory.state_dict())
            deep_memory.update(new_deep.state_dict(), new_y, generator)
            kept, kept_y = deep_memory.items()
            features = self._pool(upper, QuantisedTensor(kept['data'], kept['lo'],
                                                         kept['scale']).dequantise())
            fast_memory = ClassBalancedReplay(c.fast_buffer_size)
            fast_memory.experiences = self._fast_memory.experiences
            if len(kept_y):
                fast_memory.update({'pool': features}, kept_y, generator)
            fast_memory.seen = {c: n for c, n in self._fast_memory.seen.items()
                                if c in fast_memory.class_counts()}
            prototypes = self._prototypes.copy()
            prototypes.rebuild(features, kept_y)
            self._upper, self._head = upper, head
            self._deep_memory, self._fast_memory, self._prototypes = (
                deep_memory, fast_memory, prototypes)
            self._si = si
            self._generator = generator
            self._pending = []
            self._consolidations += 1
            self._upper_version = next(self._upper_ids)
            self._publish()
            seconds = time.perf_counter() - start
            logger.info('consolidated %d new + %d replayed patterns (%d classes) in %.1f s; '
                        'model version %d', n_new, n_rep, len(classes), seconds,
                        self.model_version)
            return UpdateReport(
                kind='deep', seconds=seconds, frames_used=n_new, replayed=n_rep,
                model_version=self.model_version, steps=result.steps, loss=result.last_loss,
                classes_trained=classes, pending_experiences=0,
                cpu_seconds=time.process_time() - cpu_start)

    # ------------------------------------------------------------------ management
    def forget(self, label: str) -> int:
        """Forget ``label``: free its id, clear its CWR* row/count, prototype, replay patterns.

        Returns the freed class id; KeyError if the label is unknown.
        """
        with self._train_lock:
            class_id = self.labels.remove(label)
            head = self._head.copy()
            head.clear(class_id)
            self._head = head
            self._prototypes.clear(class_id)
            self._fast_memory.purge(class_id)
            self._deep_memory.purge(class_id)
            self._pending = [(cid, d) for cid, d in self._pending if cid != class_id]
            self._sources.pop(class_id, None)
            self._publish()
            logger.info('forgot %r (class %d)', label, class_id)
            return class_id

    def rename(self, old: str, new: str) -> int:
        """Rename class ``old`` to ``new`` (same id and knowledge); return the id."""
        with self._train_lock:
            class_id = self.labels.rename(old, new)
            self._publish()
            logger.info('renamed class %d %r -> %r', class_id, old, new)
            return class_id

    def reset(self) -> None:
        """Forget everything: back to the pretrained backbone and no classes."""
        with self._train_lock:
            version = self.model_version
            self._init_knowledge()
            self.model_version = version
            self._publish()
            self.reset_smoothing()
            logger.info('reset to the pretrained model')

    def classes(self) -> list[tuple[int, str]]:
        """Return ``(id, name)`` of the registered classes."""
        return self.labels.items()

    def status(self) -> dict:
        """Return counters for a status message."""
        return {'classes': len(self.labels), 'model_version': self.model_version,
                'pending_experiences': len(self._pending),
                'consolidations': self._consolidations,
                'fast_buffer': len(self._fast_memory),
                'fast_buffer_size': self.config.fast_buffer_size,
                'deep_buffer': len(self._deep_memory),
                'deep_buffer_size': self.config.deep_buffer_size}

    def class_table(self) -> list[tuple[int, str, int]]:
        """Return ``(id, name, patterns learned)`` of every registered class, by id."""
        past = self._head.past
        return [(cid, name, int(past[cid]) if cid < len(past) else 0)
                for cid, name in sorted(self.labels.items())]

    def signature(self) -> dict:
        """Return what a stored state must match to be loadable (backbone, input, layers)."""
        return self._compat()

    def signature_defaults(self) -> dict:
        """Return :func:`signature_defaults` of this learner's backbone."""
        return signature_defaults(self.config.backbone)

    # ------------------------------------------------------------------ fleet: lesson packs
    def upper_fingerprint(self) -> str:
        """Return the sha256 of the current ``upper`` weights (pool vectors are valid for it)."""
        upper = self._upper
        if self._upper_print[0] is not upper:  # modules are replaced, never mutated
            self._upper_print = (upper, fingerprint_module(upper))
        return self._upper_print[1]

    def class_origins(self) -> dict[int, list[str]]:
        """Return ``{class id: origins}``; ``''`` stands for lessons taught to this learner."""
        return {cid: sorted({origin for origin, _ in self._sources.get(cid, {})} or {LOCAL})
                for cid in self.labels.ids()}

    def export_classes(self, labels: list[str] | None, *, origin: str) -> LessonPack:
        """Return a lesson pack of ``labels`` (all classes when empty or None).

        ``origin`` names this learner in the pack (e.g. its node's fully qualified name). A
        class known only from one other learner keeps that origin, its name there and its
        revision; any other class gets ``origin``, its label and the time of its last change.
        Raises KeyError for an unknown label and ValueError when nothing is known yet.
        """
        with self._train_lock:
            names = list(labels) if labels else [n for _, n in self.labels.items()]
            if not names:
                raise ValueError('no classes to export: this learner knows none yet')
            ids = [self.labels.id_of(n) for n in names]
            if len(set(ids)) != len(ids):
                raise ValueError('a label was given twice')
            fast, fast_y = self._fast_memory.items()
            deep, deep_y = self._deep_memory.items()
            deep_q = QuantisedTensor.from_state_dict(deep) if deep else None
            empty = QuantisedTensor.quantise(torch.zeros(0, *self.deep_shape),
                                             self.config.replay_dtype)
            classes = []
            for cid in ids:
                sources = self._sources.get(cid, {})
                if len(sources) == 1 and next(iter(sources))[0] != LOCAL:
                    (source_origin, source_name), revision = next(iter(sources.items()))
                else:
                    source_origin, source_name = origin, self.labels.name_of(cid)
                    revision = max(sources.values(), default=0)
                pending = [d for c, d in self._pending if c == cid]
                feature_sum, count, spread_sum, spread_count = self._prototypes.class_stats(cid)
                in_deep = torch.nonzero(deep_y == cid).flatten()
                classes.append(ClassLesson(
                    name=source_name, origin=source_origin, revision=int(revision),
                    pool=fast['pool'][fast_y == cid].clone() if fast else
                    torch.zeros(0, self.feature_dim),
                    seen=int(self._fast_memory.seen.get(cid, int((fast_y == cid).sum()))),
                    deep=deep_q.index(in_deep) if deep_q is not None else empty,
                    deep_seen=int(getattr(self._deep_memory, 'seen', {}).get(cid, 0)),
                    pending=QuantisedTensor.cat(pending) if pending else empty,
                    prototype_sum=feature_sum, prototype_count=count,
                    spread_sum=spread_sum, spread_count=spread_count,
                    cwr_row=self._head.cw[cid].clone() if cid < self._head.capacity
                    else torch.zeros(self.feature_dim),
                    cwr_count=int(self._head.past[cid]) if cid < self._head.capacity else 0))
            return LessonPack(origin=origin, created_utc=now_utc(), signature=self._compat(),
                              upper_fingerprint=self.upper_fingerprint(),
                              replay_dtype=self.config.replay_dtype, classes=tuple(classes))

    def import_pack(self, pack: LessonPack, pack_id: str, *, on_clash: str = 'refuse',
                    once: bool = False) -> ImportReport:
        """Take in the classes of a verified lesson pack, by the rules of a local lesson.

        For every class: its pool vectors (recomputed from its deep latents through this
        learner's ``upper`` when the pack's ``upper`` differs) go into the class-balanced
        memory as a sample of the patterns the exporter had seen, its deep latents into the
        deep memory and the pending lessons; its prototype statistics and lesson spreads are
        added; its CWR* row is folded in by the CWR* rule (same ``upper`` only) and the fast
        head is then trained on the imported patterns with replay, like a lesson.

        A label already taken here is a clash, resolved by ``on_clash``: 'merge' into the
        existing class, 'rename' (new class ``name@origin``), or 'refuse'. A newer revision of
        a class this learner knows only from the same origin replaces it; the same or an older
        revision is skipped. With ``once`` (packs received on a topic, which may come again),
        a pack imported before (same ``pack_id``) changes nothing, even when a class it brought
        was forgotten since; an explicit import takes a forgotten class in again.

        Raises:
            PackError: another backbone signature, a clash under 'refuse', too many classes, or
                pool vectors of another ``upper`` without deep latents to recompute them from;
                the learner is unchanged then.
        """
        if on_clash not in CLASH_POLICIES:
            raise PackError(f'on_clash must be one of {", ".join(CLASH_POLICIES)}, got '
                            f'{on_clash!r}')
        differences = signature_differences(pack.signature, self._compat(),
                                            self.signature_defaults())
        if differences:
            raise PackError('the pack was made with another backbone, its patterns are '
                            f'meaningless here: {"; ".join(differences)}')
        c = self.config
        with self._train_lock, _torch_threads(c.fast_num_threads):
            start = time.perf_counter()
            if once and pack_id in self._imported:
                return ImportReport(pack_id=pack_id, duplicate=True,
                                    model_version=self.model_version,
                                    skipped=[(e.name, 'this pack was imported before')
                                             for e in pack.classes])
            reencode = pack.upper_fingerprint != self.upper_fingerprint()
            plan, skipped = self._plan_import(pack, on_clash, reencode)
            imported = []
            # Everything that can refuse the pack was checked by the plan; a failure past this
            # point is a bug, and leaves a half-imported learner (Teacher restores the state).
            for entry, action, label, class_id in plan:
                class_id = self._import_class(entry, action, label, class_id, reencode)
                imported.append((entry.name, label, class_id, action))
            if pack_id not in self._imported:
                self._imported = (self._imported + [pack_id])[-_MAX_IMPORTED_IDS:]
            if imported:
                self._publish()
            seconds = time.perf_counter() - start
            logger.info('imported %d classes from %s (%s) in %.3f s%s; model version %d',
                        len(imported), pack.origin, pack_id[:12], seconds,
                        ' (pool vectors recomputed)' if reencode else '', self.model_version)
            return ImportReport(pack_id=pack_id, imported=imported, skipped=skipped,
                                reencoded=reencode, model_version=self.model_version,
                                seconds=seconds)

    def _plan_import(self, pack: LessonPack, on_clash: str, reencode: bool):
        """Decide per class what to do, before anything changes (raises PackError)."""
        plan, skipped, new_labels = [], [], set()
        for entry in pack.classes:
            key = (entry.origin, entry.name)
            holder = next((cid for cid, found in self._sources.items() if key in found), None)
            if reencode and entry.deep_latents() is None:
                raise PackError(f"'{entry.name}': its pool vectors were computed by another "
                                "upper network and the pack holds no deep latents to "
                                'recompute them from')
            if holder is not None:
                known = self._sources[holder][key]
                if entry.revision <= known:
                    skipped.append((entry.name, f'already known from {entry.origin} at this or '
                                                'a newer revision'))
                    continue
                if set(self._sources[holder]) == {key}:
                    plan.append((entry, 'updated', self.labels.name_of(holder), holder))
                    continue
                taken = self.labels.name_of(holder)
            else:
                try:
                    name = self.labels.validate(entry.name)
                except ValueError as error:
                    raise PackError(f'class {entry.name!r}: {error}') from error
                taken = name if (name in self.labels or name in new_labels) else None
                if taken is None:
                    plan.append((entry, 'new', name, None))
                    new_labels.add(name)
                    continue
            if on_clash == 'refuse':
                raise PackError(f"label clash: '{taken}' is already a class here (the pack's "
                                f"'{entry.name}' from {entry.origin}); import with on_clash "
                                'merge or rename')
            if on_clash == 'merge' and taken not in new_labels:
                plan.append((entry, 'merged', taken, self.labels.id_of(taken)))
                continue
            label = self._free_label(entry, new_labels)
            plan.append((entry, 'renamed', label, None))
            new_labels.add(label)
        added = sum(1 for _, action, _, cid in plan if cid is None)
        if len(self.labels) + added > self.config.max_classes:
            raise PackError(f'importing {added} new classes would pass max_classes '
                            f'({self.config.max_classes}); forget some classes first')
        return plan, skipped

    def _free_label(self, entry: ClassLesson, new_labels: set) -> str:
        tail = entry.origin.rstrip('/').split('/')
        where = next((part for part in tail if part), 'fleet')
        base = f'{entry.name}@{where}'
        label, n = base, 2
        while label in self.labels or label in new_labels:
            label, n = f'{base}#{n}', n + 1
        try:
            return self.labels.validate(label)
        except ValueError as error:
            raise PackError(f"cannot rename '{entry.name}' for import: {error}") from error

    def _import_class(self, entry: ClassLesson, action: str, label: str,
                      class_id: int | None, reencode: bool) -> int:
        """Apply one planned class (see :meth:`import_pack`); caller holds the training lock."""
        c = self.config
        deep_all = entry.deep_latents()
        if reencode:
            pool = self._pool(self._upper, deep_all.dequantise())
        else:
            pool = entry.pool
        if action == 'updated':
            head = self._head.copy()
            head.clear(class_id)
            self._head = head
            self._prototypes.clear(class_id)
            self._fast_memory.purge(class_id)
            self._deep_memory.purge(class_id)
            self._pending = [(cid, d) for cid, d in self._pending if cid != class_id]
            self._sources.pop(class_id, None)
        if class_id is None:
            class_id = self.labels.add(label)
        head = self._head.copy()
        prototypes = self._prototypes.copy()
        if reencode:  # the exporter's sums belong to its upper: the recomputed mean stands in
            prototypes.merge_class(class_id, pool.double().mean(0) * entry.prototype_count,
                                   entry.prototype_count, entry.spread_sum, entry.spread_count)
        else:
            prototypes.merge_class(class_id, entry.prototype_sum, entry.prototype_count,
                                   entry.spread_sum, entry.spread_count)
            if entry.cwr_count > 0:
                head.merge_row(class_id, entry.cwr_row, entry.cwr_count)
        new_y = torch.full((pool.shape[0],), class_id, dtype=torch.long)
        replay, replay_y = self._fast_memory.items()
        classes = sorted(set(replay_y.tolist()) | {class_id})
        settings = TrainSettings(
            epochs=c.fast_epochs, new_per_batch=c.fast_new_per_batch,
            replay_per_batch=c.fast_replay_per_batch, lr=c.fast_lr, head_lr=c.fast_lr,
            momentum=c.momentum, weight_decay=c.weight_decay)
        result = train_experience(
            rows=head.initial_rows(classes), classes=classes, new_x=pool, new_y=new_y,
            replay_x=replay.get('pool'), replay_y=replay_y, settings=settings,
            generator=self._generator, normalise=True, prior=self._prior(prototypes, classes))
        head.consolidate(classes, result.rows, class_counts(new_y, replay_y))
        self._fast_memory.update({'pool': pool}, new_y, self._generator,
                                 represents={class_id: max(entry.seen, pool.shape[0])})
        if len(entry.deep):
            deep = entry.deep
            if deep.dtype != c.replay_dtype:
                deep = QuantisedTensor.quantise(deep.dequantise(), c.replay_dtype)
            self._deep_memory.update(deep.state_dict(),
                                     torch.full((len(deep),), class_id, dtype=torch.long),
                                     self._generator,
                                     represents={class_id: max(entry.deep_seen, len(deep))})
        if len(entry.pending):
            pending = entry.pending
            if pending.dtype != c.replay_dtype:
                pending = QuantisedTensor.quantise(pending.dequantise(), c.replay_dtype)
            self._pending.append((class_id, pending))
        self._head, self._prototypes = head, prototypes
        self._sources.setdefault(class_id, {})[entry.origin, entry.name] = int(entry.revision)
        return class_id

    # ------------------------------------------------------------------ persistence
    def _compat(self) -> dict:
        return {'backbone': self.config.backbone, 'input_size': self.config.input_size,
                'deep_layer': self._backbone.deep_layer,
                'feature_layer': self._backbone.feature_layer, 'feature_dim': self.feature_dim,
                'deep_shape': list(self.deep_shape), 'centre_sigma': self.config.centre_sigma,
                'surround_weight': self.config.surround_weight,
                'lower_fingerprint': self._backbone.fingerprint}

    def state_dict(self) -> dict:
        """Return the learned knowledge as nested dicts/lists of tensors and plain values."""
        with self._train_lock:
            return {
                'format': STATE_FORMAT, 'format_version': STATE_FORMAT_VERSION,
                'compat': self._compat(),
                'replay_dtype': self.config.replay_dtype,
                'model_version': self.model_version,
                'consolidations': self._consolidations,
                'upper_version': self._upper_version,
                'upper': {k: v.clone() for k, v in self._upper.state_dict().items()},
                'head': self._head.state_dict(),
                'prototypes': self._prototypes.state_dict(),
                'labels': self.labels.state_dict(),
                'fast_replay': self._fast_memory.state_dict(),
                'deep_replay': self._deep_memory.state_dict(),
                'pending': [{'class_id': cid, 'latents': d.state_dict()}
                            for cid, d in self._pending],
                'si': self._si.state_dict() if self._si is not None else None,
                'rng': self._generator.get_state(),
                'fleet': {'sources': [[cid, origin, name, revision]
                                      for cid, found in sorted(self._sources.items())
                                      for (origin, name), revision in sorted(found.items())],
                          'imported': list(self._imported)},
            }

    def _check_compat(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get('format') != STATE_FORMAT:
            raise ValueError('state: not a cl_core_ros learner state')
        if int(state.get('format_version', -1)) > STATE_FORMAT_VERSION:
            raise ValueError(f'state: format version {state.get("format_version")} is newer '
                             f'than this code ({STATE_FORMAT_VERSION})')
        saved, mine = state.get('compat', {}), self._compat()
        before = self.signature_defaults()
        for key in ('backbone', 'input_size', 'deep_layer', 'feature_layer', 'feature_dim',
                    'deep_shape', 'centre_sigma', 'surround_weight', 'lower_fingerprint'):
            a = saved.get(key, before.get(key))
            b = mine[key]
            if (list(a) if isinstance(a, list | tuple) else a) != b:
                what = 'weights below the deep layer' if key == 'lower_fingerprint' else key
                raise ValueError(f'state: incompatible {what}: saved {a!r}, this learner {b!r} '
                                 '(stored latents and weights would be meaningless)')

    def _load_memory(self, saved: dict, policy: str, capacity: int, dtype: str | None
                     ) -> ReplayMemory:
        if saved['policy'] != policy:
            raise ValueError(f'state: replay policy {saved["policy"]!r}, this learner uses '
                             f'{policy!r}')
        memory = make_memory(policy, max(capacity, len(saved['labels'])))
        memory.load_state_dict(saved)
        if dtype is not None and memory.payload and \
                QuantisedTensor(memory.payload['data'], memory.payload['lo'],
                                memory.payload['scale']).dtype != dtype:
            q = QuantisedTensor.from_state_dict(memory.payload).dequantise()
            memory.payload = QuantisedTensor.quantise(q, dtype).state_dict()
        memory.capacity = capacity
        if len(memory) > capacity:  # shrink into the smaller memory the policy's way
            payload, labels = memory.items()
            generator = torch.Generator().manual_seed(self.config.seed)
            experiences, seen = memory.experiences, getattr(memory, 'seen', None)
            memory = make_memory(policy, capacity)
            if policy == 'random':
                idx = torch.randperm(len(labels), generator=generator)[:capacity]
                memory.replace_all({k: v[idx] for k, v in payload.items()}, labels[idx])
            else:
                memory.update(payload, labels, generator)
                memory.seen = dict(seen)
            memory.experiences = experiences
        return memory

    def load_state_dict(self, state: dict) -> None:
        """Restore knowledge saved by :meth:`state_dict`.

        Raises ValueError (saying why) for a state of another backbone, input size, deep layer
        or backbone weights; the learner is unchanged then.
        """
        self._check_compat(state)
        c = self.config
        with self._train_lock:
            upper = copy.deepcopy(self._upper)
            upper.load_state_dict(state['upper'])
            upper.eval()
            head = CWRHead(self.feature_dim, c.initial_capacity)
            head.load_state_dict(state['head'])
            prototypes = PrototypeBank(self.feature_dim, c.initial_capacity)
            prototypes.load_state_dict(state['prototypes'])
            labels = LabelRegistry(max_classes=c.max_classes, max_length=c.max_label_length)
            label_notes = labels.load_state_dict(state['labels'])
            fast = self._load_memory(state['fast_replay'], 'class_balanced',
                                     c.fast_buffer_size, None)
            deep = self._load_memory(state['deep_replay'], c.deep_replay_policy,
                                     c.deep_buffer_size, c.replay_dtype)
            pending = []
            for item in state['pending']:
                q = QuantisedTensor.from_state_dict(item['latents'])
                if q.dtype != c.replay_dtype:
                    q = QuantisedTensor.quantise(q.dequantise(), c.replay_dtype)
                pending.append((int(item['class_id']), q))
            si = None
            if c.use_si:
                si = SynapticIntelligence(strength=c.si_strength,
                                          max_importance=c.si_max_importance)
                if state.get('si') is not None:
                    si.load_state_dict(state['si'])
            generator = torch.Generator()
            generator.set_state(state['rng'])
            sources, imported = _load_fleet(state.get('fleet'), labels.ids())
            self._sources, self._imported = sources, imported
            self._upper, self._head, self._prototypes = upper, head, prototypes
            self.labels.load_state_dict(labels.state_dict())
            self.load_notes = label_notes
            self._fast_memory, self._deep_memory, self._pending = fast, deep, pending
            self._si, self._generator = si, generator
            self._consolidations = int(state['consolidations'])
            self._upper_version = 0 if self._consolidations == 0 else next(self._upper_ids)
            saved_version = int(state['model_version'])
            if saved_version > self.model_version:
                self.model_version = saved_version
                self._publish(bump=False)
            else:
                self._publish()
            self.reset_smoothing()
            logger.info('loaded state: %d classes, model version %d', len(self.labels),
                        self.model_version)


def _load_fleet(saved, ids: list[int]) -> tuple[dict, list[str]]:
    """Return (sources, imported pack ids) of a state; states from before fleets: all local."""
    sources: dict[int, dict[tuple[str, str], int]] = {}
    imported: list[str] = []
    if isinstance(saved, dict):
        for cid, origin, name, revision in saved.get('sources', []):
            sources.setdefault(int(cid), {})[str(origin), str(name)] = int(revision)
        imported = [str(p) for p in saved.get('imported', [])]
    return {cid: found for cid, found in sources.items() if cid in ids}, imported
