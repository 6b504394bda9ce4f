"""Separable Gaussian filtering in torch (reflect borders), shared by the scorer's map smoothing and
the local-statistics map; plain convolutions, so both export to ONNX/TensorRT."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """1-D normalised Gaussian of radius round(3 sigma) (at least 1)."""
    radius = max(1, int(round(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(m: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> the same, each channel filtered with the separable `kernel` (1-D, odd length)."""
    if kernel.numel() == 1:
        return m
    c, r = int(m.shape[1]), kernel.numel() // 2  # channels are static; the batch may be dynamic (ONNX)
    k = kernel.to(m.dtype).view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    m = F.conv2d(F.pad(m, (r, r, 0, 0), mode="reflect"), k, groups=c)
    return F.conv2d(F.pad(m, (0, 0, r, r), mode="reflect"), k.transpose(2, 3), groups=c)
