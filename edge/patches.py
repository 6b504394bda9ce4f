"""Multi-scale grid patches ("global to local"): an image cut into s x s equal patches."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad NCHW bottom/right so both sides are multiples of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def to_patches(x: torch.Tensor, s: int) -> torch.Tensor:
    """(N, C, H, W) -> (N*s*s, C, H/s, W/s), row-major over the grid."""
    n, c, h, w = x.shape
    ph, pw = h // s, w // s
    return x.reshape(n, c, s, ph, s, pw).permute(0, 2, 4, 1, 3, 5).reshape(n * s * s, c, ph, pw)


def from_patches(p: torch.Tensor, s: int) -> torch.Tensor:
    """Inverse of `to_patches`."""
    b, c, ph, pw = p.shape
    n = b // (s * s)
    return p.reshape(n, s, s, c, ph, pw).permute(0, 3, 1, 4, 2, 5).reshape(n, c, s * ph, s * pw)
