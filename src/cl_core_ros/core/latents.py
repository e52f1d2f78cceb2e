"""Latent activations of frames: deep-level latents (stored quantised) and pooled vectors.

Deep latents are kept the way the replay memory stores them, so a batch computed while frames
arrive can go into the memory unchanged:

- ``uint8``: per-pattern affine quantisation, ``x ~ lo + q * scale`` with ``q`` in 0..255
  (4x smaller than fp32; the latent replay paper reports negligible accuracy loss).
- ``float16``: half precision (2x smaller).
- ``float32``: no compression (for tests and comparisons).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

REPLAY_DTYPES = ('uint8', 'float16', 'float32')


@dataclass(frozen=True)
class QuantisedTensor:
    """A batch of tensors stored as ``data`` (uint8/fp16/fp32) with per-row ``lo`` and ``scale``.

    ``lo`` and ``scale`` are 1-D float32 tensors of length N (used by uint8 only; zeros and ones
    otherwise, so that every field can be indexed by row).
    """

    data: torch.Tensor
    lo: torch.Tensor
    scale: torch.Tensor

    @staticmethod
    def quantise(x: torch.Tensor, dtype: str) -> 'QuantisedTensor':
        """Compress a float batch ``x`` (N x ...) to ``dtype``."""
        x = x.detach().float()
        n = x.shape[0]
        if dtype == 'float32':
            return QuantisedTensor(x.contiguous(), torch.zeros(n), torch.ones(n))
        if dtype == 'float16':
            return QuantisedTensor(x.half().contiguous(), torch.zeros(n), torch.ones(n))
        if dtype != 'uint8':
            raise ValueError(f'replay_dtype: unknown {dtype!r}, expected one of {REPLAY_DTYPES}')
        if n == 0:
            return QuantisedTensor(torch.zeros(x.shape, dtype=torch.uint8), torch.zeros(0),
                                   torch.zeros(0))
        flat = x.reshape(n, -1)
        lo = flat.min(dim=1).values
        scale = ((flat.max(dim=1).values - lo) / 255.0).clamp_min(1e-12)
        q = torch.round((flat - lo[:, None]) / scale[:, None]).clamp(0, 255).to(torch.uint8)
        return QuantisedTensor(q.reshape(x.shape), lo, scale)

    @property
    def dtype(self) -> str:
        """Return the storage type name."""
        return str(self.data.dtype).removeprefix('torch.')

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def dequantise(self) -> torch.Tensor:
        """Return the float32 values."""
        if self.data.dtype != torch.uint8:
            return self.data.float()
        view = (-1,) + (1,) * (self.data.dim() - 1)
        return self.data.float() * self.scale.view(view) + self.lo.view(view)

    def index(self, idx: torch.Tensor) -> 'QuantisedTensor':
        """Return the rows ``idx``."""
        return QuantisedTensor(self.data[idx], self.lo[idx], self.scale[idx])

    @staticmethod
    def cat(parts: Sequence['QuantisedTensor']) -> 'QuantisedTensor':
        """Concatenate batches of one storage type."""
        if not parts:
            raise ValueError('nothing to concatenate')
        if len({p.data.dtype for p in parts}) != 1:
            raise ValueError('cannot concatenate latents of different storage types')
        return QuantisedTensor(torch.cat([p.data for p in parts]),
                               torch.cat([p.lo for p in parts]),
                               torch.cat([p.scale for p in parts]))

    def state_dict(self) -> dict:
        """Return tensors only."""
        return {'data': self.data, 'lo': self.lo, 'scale': self.scale}

    @staticmethod
    def from_state_dict(state: dict) -> 'QuantisedTensor':
        """Rebuild from :meth:`state_dict` output."""
        return QuantisedTensor(state['data'], state['lo'].float(), state['scale'].float())


@dataclass(frozen=True)
class Latents:
    """Latent activations of N frames.

    Attributes:
        deep: deep-level latents (N x C x H x W), quantised as the replay memory stores them.
        pool: pooled feature vectors (N x D, float32), computed from the unquantised latents.
        upper_version: version of ``upper`` that computed ``pool`` (-1 when mixed); a learner
            recomputes ``pool`` from ``deep`` when its ``upper`` has changed since.
    """

    deep: QuantisedTensor
    pool: torch.Tensor
    upper_version: int = 0

    def __len__(self) -> int:
        return int(self.pool.shape[0])

    @staticmethod
    def cat(parts: Sequence['Latents']) -> 'Latents':
        """Concatenate latents of several batches (cheap: no recomputation)."""
        parts = list(parts)
        versions = {p.upper_version for p in parts}
        return Latents(QuantisedTensor.cat([p.deep for p in parts]),
                       torch.cat([p.pool for p in parts]),
                       versions.pop() if len(versions) == 1 else -1)

    def index(self, idx: torch.Tensor) -> 'Latents':
        """Return the rows ``idx``."""
        return Latents(self.deep.index(idx), self.pool[idx], self.upper_version)

    def state_dict(self) -> dict:
        """Return tensors only."""
        return {'deep': self.deep.state_dict(), 'pool': self.pool,
                'upper_version': self.upper_version}

    @staticmethod
    def from_state_dict(state: dict) -> 'Latents':
        """Rebuild from :meth:`state_dict` output."""
        return Latents(QuantisedTensor.from_state_dict(state['deep']), state['pool'].float(),
                       int(state.get('upper_version', -1)))
