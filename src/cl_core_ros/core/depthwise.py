"""Depthwise convolution on tiny feature maps as batched matrix products (same values).

On the small maps of the trainable upper layers (4x4 or 8x8 pixels) PyTorch's CPU depthwise
kernels, and above all their backward pass, are slow. For a map of Q input and P output
positions each channel's convolution is a P x Q matrix ``M_c = sum_ab w[c, a, b] S_ab`` built
from fixed 0/1 shift matrices ``S_ab``; the convolution then is one batched matmul over channels,
forward and backward (about 7x faster for 1152 channels at 4x4 with a 5x5 kernel on 2 cores).

A convolution frozen for inference (``frozen_matrices`` set to a dict, see ``core.fusion``)
builds its matrices once per input size instead of on every call.
"""

import functools

import torch
from torch import nn

MAX_POSITIONS = 1024  # use the matmul form when P * Q is at most this


@functools.lru_cache(maxsize=64)
def shift_matrices(height: int, width: int, kernel: int, stride: int, pad_top: int,
                   pad_left: int, out_h: int, out_w: int) -> torch.Tensor:
    """Return ``S`` (k x k x P x Q): S[a, b, p, q] = 1 where tap (a, b) of output p reads q."""
    s = torch.zeros(kernel, kernel, out_h * out_w, height * width)
    for i in range(out_h):
        for j in range(out_w):
            for a in range(kernel):
                for b in range(kernel):
                    y, x = i * stride + a - pad_top, j * stride + b - pad_left
                    if 0 <= y < height and 0 <= x < width:
                        s[a, b, i * out_w + j, y * width + x] = 1.0
    return s


def is_depthwise(conv: nn.Conv2d) -> bool:
    """Return whether ``conv`` is a depthwise convolution with a square stride."""
    return conv.groups == conv.in_channels == conv.out_channels > 1 \
        and conv.stride[0] == conv.stride[1]


def use_matmul(height: int, width: int, out_h: int, out_w: int) -> bool:
    """Return whether the matmul form pays off for these map sizes."""
    return height * width * out_h * out_w <= MAX_POSITIONS


def depthwise_matrices(weight: torch.Tensor, height: int, width: int, stride: int,
                       pad_top: int, pad_left: int, out_h: int, out_w: int) -> torch.Tensor:
    """Return the C x P x Q matrices of a depthwise ``weight`` (C x 1 x k x k)."""
    s = shift_matrices(height, width, weight.shape[-1], stride, pad_top, pad_left, out_h, out_w)
    return torch.einsum('ckl,klpq->cpq', weight[:, 0], s)


def conv_depthwise_matmul(conv: nn.Conv2d, x: torch.Tensor, pad_top: int, pad_left: int,
                          out_h: int, out_w: int) -> torch.Tensor:
    """Run depthwise ``conv`` (bias included) on ``x`` in the matmul form.

    Matrices are cached per input size when ``conv.frozen_matrices`` is a dict (frozen copies
    only: the cache would go stale if the weight changed).
    """
    h, w = x.shape[-2:]
    cache = getattr(conv, 'frozen_matrices', None)
    key = (h, w, pad_top, pad_left)
    m = cache.get(key) if cache is not None else None
    if m is None:
        m = depthwise_matrices(conv.weight, h, w, conv.stride[0], pad_top, pad_left, out_h,
                               out_w)
        if cache is not None:
            cache[key] = m
    n, c = x.shape[:2]
    out = torch.bmm(m, x.reshape(n, c, h * w).permute(1, 2, 0))
    out = out.permute(2, 0, 1).reshape(n, c, out_h, out_w)
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)
