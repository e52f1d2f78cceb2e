"""Learner configuration: a frozen, keyword-only dataclass with documented defaults."""

from dataclasses import asdict, dataclass, fields
import math

from cl_core_ros.core.backbone import (
    BACKBONES,
    default_deep_layer,
    default_feature_layer,
    stage_names,
)
from cl_core_ros.core.latents import REPLAY_DTYPES


@dataclass(frozen=True, kw_only=True)
class LearnerConfig:
    """Everything that shapes a :class:`~cl_core_ros.core.learner.Learner`.

    Model:
        backbone: 'efficientnet_lite0' (ImageNet weights bundled) or 'mobilenet_v1' (the paper's
            net; needs ``mobilenet_weights``).
        input_size: square input side in pixels (192; the paper uses 128, EfficientNet-Lite0
            was trained at 224: on the hard stream 192 recognises best, see the README).
        centre_sigma: centre-weighted pooling of the last feature map, Gaussian standard
            deviation as a fraction of the map side (0.12; 0 = plain global average pooling).
        surround_weight: share of the map's border ring subtracted from the centre-weighted
            feature (0.5; 0 = none): see :class:`~cl_core_ros.core.backbone.PooledUpper`.
        mobilenet_weights: path of a MobileNetV1 ``.safetensors`` / torch state_dict file.
        deep_layer: stage whose output is the deep latent; None = 'block10' (112x12x12 at
            192 px) for EfficientNet-Lite0, 'conv5_4/dw' (512x8x8) for MobileNetV1.
        feature_layer: last stage of ``upper``, whose pooled output is the feature; None =
            'block15' (320-d) for EfficientNet-Lite0 (``head_conv`` gives the 1280-d feature
            of states stored before this field existed), the last stage for MobileNetV1
            (:func:`~cl_core_ros.core.backbone.default_feature_layer`).
    Fast update ("learn this object": head only, pool-level replay):
        fast_epochs, fast_new_per_batch, fast_replay_per_batch: 8 epochs of 20 new + 100 replayed.
        fast_buffer_size: class-balanced pool-level memory (500 vectors).
        fast_lr: SGD learning rate of the residual head rows (1e-2; the prototype term of the
            read-out is fixed, see :mod:`cl_core_ros.core.readout`).
    Deep update (consolidation: ``upper`` with BRN and the head, deep-level replay):
        deep_buffer_size: deep-level memory size (1500 latents).
        deep_replay_policy: 'class_balanced' (the app; default) or 'random' (AR1* reference:
            h = min(M // (i + 1), n_new) patterns per consolidation overwrite random slots).
        deep_epochs, deep_batch_size: 4 epochs, minibatches of 128 mixing pending and replayed
            latents in proportion to their numbers.
        deep_recompute: keep only the input of every conv unit of ``upper`` for backward and
            recompute the rest there (activation checkpointing, exact; True): at 192 px and
            batch 128 a training step's extra memory falls from about 1.1 GB to 0.7 GB, for
            about one more forward pass per step.
        deep_lr_first, deep_lr: ``upper`` learning rate of the first consolidation and of later
            ones (reference 1e-3 then 5e-5).
        deep_head_lr: head learning rate during consolidation.
        momentum, weight_decay: SGD settings of both updates (0.9, 5e-4).
        brn_momentum_first, brn_momentum: BRN running-statistics momentum (0.01, then 5e-5).
        brn_r_max, brn_d_max, brn_warmup_steps: r_max grows 1 -> 1.25 and d_max 0 -> 0.5 over
            that many training minibatches.
        replay_dtype: deep latent storage: 'uint8' (per-pattern affine), 'float16', 'float32'.
        use_si, si_strength, si_max_importance: Synaptic Intelligence on ``upper`` conv weights.
    Read-out and inference (see :mod:`cl_core_ros.core.readout`):
        readout_scale: weight of the cosine prototype term of the logits (16).
        smoothing_window: frames averaged by ``predict(smooth=True)`` (6).
        unknown_threshold: smoothed top-1 probability under which the verdict is unknown
            (0: off; the similarity floors decide).
        unknown_ratio: a frame is unknown when its smoothed similarity to the top-1 prototype
            is under ``unknown_ratio`` times the 5th percentile of that class's lesson
            similarities (0 disables that test; works with one class too). Used until a known
            object was taught again in another scene, when ``unknown_quantile`` is set.
        unknown_quantile: once known objects were taught again in other scenes, the floor is
            this quantile of their lessons' smoothed similarities to the prototypes made in the
            earlier scenes (0.02: about 2% of a taught object's frames in an unseen scene fall
            under it; 0, the default: always use ``unknown_ratio``). It assumes the second
            lessons were taught in other places. See :mod:`cl_core_ros.core.readout`.
        top_k: classes reported per prediction.
    Bookkeeping:
        max_classes: registry limit (1000); initial_capacity: head rows allocated at start (the
            head grows by doubling); max_label_length: longest class name.
        seed: seed of every random choice (replay sampling, minibatch order).
        num_threads: torch intra-op threads (None: leave torch's default).
        fast_num_threads: threads of the calling thread during the fast update (1: its
            matrices are small, and on a busy CPU multi-threaded small ops wait on each other:
            measured 1.85 s with 2 threads vs 0.28 s with 1 under load; None: unchanged).
    """

    backbone: str = 'efficientnet_lite0'
    input_size: int = 192
    centre_sigma: float = 0.12
    surround_weight: float = 0.5
    mobilenet_weights: str | None = None
    deep_layer: str | None = None
    feature_layer: str | None = None
    fast_epochs: int = 8
    fast_new_per_batch: int = 20
    fast_replay_per_batch: int = 100
    fast_buffer_size: int = 500
    fast_lr: float = 0.01
    deep_buffer_size: int = 1500
    deep_replay_policy: str = 'class_balanced'
    deep_epochs: int = 4
    deep_batch_size: int = 128
    deep_recompute: bool = True
    deep_lr_first: float = 1e-3
    deep_lr: float = 5e-5
    deep_head_lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    brn_momentum_first: float = 0.01
    brn_momentum: float = 5e-5
    brn_r_max: float = 1.25
    brn_d_max: float = 0.5
    brn_warmup_steps: int = 100
    replay_dtype: str = 'uint8'
    use_si: bool = False
    si_strength: float = 1.0
    si_max_importance: float = 0.001
    readout_scale: float = 16.0
    smoothing_window: int = 6
    unknown_threshold: float = 0.0
    unknown_ratio: float = 0.53
    unknown_quantile: float = 0.0
    top_k: int = 3
    max_classes: int = 1000
    initial_capacity: int = 100
    max_label_length: int = 64
    seed: int = 0
    num_threads: int | None = None
    fast_num_threads: int | None = 1

    @property
    def resolved_deep_layer(self) -> str:
        """Return ``deep_layer`` or the backbone's default."""
        return self.deep_layer or default_deep_layer(self.backbone)

    @property
    def resolved_feature_layer(self) -> str:
        """Return ``feature_layer`` or the backbone's default."""
        return self.feature_layer or default_feature_layer(self.backbone)

    def validate(self) -> 'LearnerConfig':
        """Return self or raise ValueError naming the offending field."""
        if self.backbone not in BACKBONES:
            raise ValueError(f'backbone: {self.backbone!r} is not one of {BACKBONES}')
        if self.deep_layer is not None and self.deep_layer not in stage_names(self.backbone):
            raise ValueError(f'deep_layer: {self.deep_layer!r} is not a stage of {self.backbone}')
        names = stage_names(self.backbone)
        if self.feature_layer is not None and self.feature_layer not in names:
            raise ValueError(f'feature_layer: {self.feature_layer!r} is not a stage of '
                             f'{self.backbone}')
        if names.index(self.resolved_feature_layer) <= names.index(self.resolved_deep_layer):
            raise ValueError(f'feature_layer: {self.resolved_feature_layer!r} must come after '
                             f'the deep layer {self.resolved_deep_layer!r}')
        if self.backbone == 'mobilenet_v1' and not self.mobilenet_weights:
            raise ValueError('mobilenet_weights: required for backbone mobilenet_v1')
        if self.deep_replay_policy not in ('class_balanced', 'random'):
            raise ValueError(f'deep_replay_policy: {self.deep_replay_policy!r} is not '
                             "'class_balanced' or 'random'")
        if self.replay_dtype not in REPLAY_DTYPES:
            raise ValueError(f'replay_dtype: {self.replay_dtype!r} is not one of {REPLAY_DTYPES}')
        positive_ints = ('input_size', 'fast_epochs', 'fast_new_per_batch', 'deep_epochs',
                         'deep_batch_size', 'smoothing_window', 'top_k', 'max_classes',
                         'initial_capacity', 'max_label_length')
        for name in positive_ints:
            self._check_int(name, minimum=1)
        for name in ('fast_replay_per_batch', 'fast_buffer_size', 'deep_buffer_size',
                     'brn_warmup_steps', 'seed'):
            self._check_int(name, minimum=0)
        if self.input_size < 32:
            raise ValueError('input_size: must be >= 32')
        if self.deep_batch_size < 2:
            raise ValueError('deep_batch_size: must be >= 2')
        for name in ('fast_lr', 'deep_lr_first', 'deep_lr', 'deep_head_lr'):
            self._check_float(name, low=0.0, low_open=True)
        for name in ('momentum', 'brn_momentum_first', 'brn_momentum'):
            self._check_float(name, low=0.0, high=1.0)
        for name in ('weight_decay', 'brn_d_max', 'si_strength', 'si_max_importance'):
            self._check_float(name, low=0.0)
        self._check_float('brn_r_max', low=1.0)
        self._check_float('unknown_threshold', low=0.0, high=1.0)
        self._check_float('unknown_ratio', low=0.0, high=1.0)
        self._check_float('unknown_quantile', low=0.0, high=0.5)
        self._check_float('centre_sigma', low=0.0, high=10.0)
        self._check_float('surround_weight', low=0.0, high=4.0)
        self._check_float('readout_scale', low=0.0, low_open=True)
        for name in ('use_si', 'deep_recompute'):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f'{name}: must be a bool')
        for name in ('num_threads', 'fast_num_threads'):
            if getattr(self, name) is not None:
                self._check_int(name, minimum=1)
        return self

    def _check_int(self, name: str, *, minimum: int) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f'{name}: must be an integer >= {minimum}, got {value!r}')

    def _check_float(self, name: str, *, low: float | None = None, high: float | None = None,
                     low_open: bool = False) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value):
            raise ValueError(f'{name}: must be a finite number, got {value!r}')
        if low is not None and (value < low or (low_open and value == low)):
            raise ValueError(f'{name}: must be {">" if low_open else ">="} {low}, got {value}')
        if high is not None and value > high:
            raise ValueError(f'{name}: must be <= {high}, got {value}')

    def to_dict(self) -> dict:
        """Return the fields as plain values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> 'LearnerConfig':
        """Build from a dict, rejecting unknown keys (ValueError naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown LearnerConfig fields: {unknown}')
        return cls(**values).validate()
