"""Local intensity statistics: each pixel's neighbourhood mean, contrast (std) and colour offsets
(channel - intensity) in a Gaussian window. They carry what VGG features normalised per location
miss: a soft brightness or colour shift (a stain) with the texture intact. The scorer appends them,
z-scored per image, to the self-similarity features (`score.knn_stats_weight`); the `local_stats`
baseline scores how far each lies from the image-wide median."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .filters import gaussian_blur, gaussian_kernel

# A statistic that varies across the frame by less than one 8-bit grey level is rounding and codec noise, not
# texture: z-scored by its own spread it would be amplified without bound (a grey product seen by a colour camera:
# a video codec's faint colour ghost of an earlier frame's defect, 0.005 levels of spread, scored as a defect).
# docs/ablations.md section 44.
SPREAD_FLOOR = 1 / 255


def local_moments(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, 3, H, W) image -> (N, 5, H, W) fp32: local mean and std of the intensity (channel mean),
    then the local mean of each channel's colour offset (zero for gray images)."""
    k = gaussian_kernel(sigma).to(x.device)
    with torch.autocast(x.device.type, enabled=False):  # E[x^2] - E[x]^2 cancels: bf16 would lose it
        x = x.float()
        gray = x.mean(dim=1, keepdim=True)
        mean = gaussian_blur(gray, k)
        std = (gaussian_blur(gray * gray, k) - mean * mean).clamp_min(0).sqrt()
        return torch.cat([mean, std, gaussian_blur(x - gray, k)], dim=1)


def _z(x: torch.Tensor, robust: bool = False) -> torch.Tensor:
    """Per image and channel: (x - mean) / std, or (x - median) / (1.4826 MAD) when `robust`; a spread below
    SPREAD_FLOOR counts as SPREAD_FLOOR."""
    if robust:
        flat = x.flatten(2)
        center = flat.median(dim=2).values[..., None, None]
        scale = 1.4826 * (flat - center.flatten(2)).abs().median(dim=2).values[..., None, None]
    else:
        center = x.mean(dim=(2, 3), keepdim=True)
        # one cell per image (a frame the self-similarity then refuses): no spread, not std's "degrees of freedom <= 0"
        # warning; python ints under the ONNX tracer, as edge.knn's
        one = int(x.shape[2]) * int(x.shape[3]) < 2
        scale = torch.zeros_like(center) if one else x.std(dim=(2, 3), keepdim=True)
    return (x - center) / (scale + 1e-6).clamp_min(SPREAD_FLOOR)


def stats_features(x: torch.Tensor, cell: int, sigma: float) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 5, ceil(H / cell), ceil(W / cell)): local moments averaged over `cell` px
    cells, z-scored per image (the same grid as edge.knn.grid_features)."""
    m = local_moments(x, sigma)  # fp32, computed outside autocast
    return _z(F.avg_pool2d(m, cell, cell, ceil_mode=True) if cell > 1 else m)


def local_stats_map(x: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W): |z(local mean)| + |z(local std)| + sum over channels of |z(colour
    offset)|, robust z-scores against the whole image (the `local_stats` baseline)."""
    return _z(local_moments(x, sigma), robust=True).abs().sum(dim=1, keepdim=True)
