"""Zero-shot reference baselines: each maps a uint8 HxWx3 RGB image to a float32 HxW anomaly map
(higher = more anomalous), judging the image on its own."""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .vgg import VGG19Features

Baseline = Callable[[np.ndarray], np.ndarray]


def _check(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 RGB image, got {image.dtype} {image.shape}")
    return image.astype(np.float32)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)


def blur_residual(image: np.ndarray, sigma: float = 8.0) -> np.ndarray:
    """|I - GaussianBlur(I, sigma)| summed over channels: a plain high-pass residual."""
    x = _check(image)
    return np.abs(x - _blur(x, sigma)).sum(axis=2)


def _robust_z(x: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 * MAD) per channel of an HxWxC array."""
    median = np.median(x, axis=(0, 1))
    mad = np.median(np.abs(x - median), axis=(0, 1))
    return (x - median) / (1.4826 * mad + 1e-6)


def local_stats(image: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """Local-statistics outliers: |z(local mean)| + |z(local std)| of the intensity (mean of the
    channels), plus |z(local mean)| of each channel's colour offset (channel - intensity), which is
    zero for gray images. Local statistics use a Gaussian window; z-scores are robust, against the
    image-wide median and MAD."""
    x = _check(image)
    gray = x.mean(axis=2, keepdims=True)
    mean = _blur(gray, sigma)[:, :, None]
    std = np.sqrt(np.maximum(_blur(gray * gray, sigma)[:, :, None] - mean * mean, 0.0))
    colour = _blur(x - gray, sigma)
    score = np.abs(_robust_z(mean)) + np.abs(_robust_z(std)) + np.abs(_robust_z(colour)).sum(axis=2, keepdims=True)
    return score[:, :, 0].astype(np.float32)


VGG_KNN_LAYERS = ("relu2_2", "relu3_1")


@lru_cache(maxsize=1)
def _vgg() -> VGG19Features:
    """The VGG19 trunk, loaded once per process."""
    return VGG19Features(layers=VGG_KNN_LAYERS)


def _knn_distance(feats: torch.Tensor, grid: tuple[int, int], k: int, radius: int, chunk: int = 1024) -> torch.Tensor:
    """Mean Euclidean distance of each unit-norm row of `feats` (N x C, N = gh * gw) to its k nearest
    rows, skipping rows within `radius` grid cells (Chebyshev) of itself. Rows are done in chunks
    so memory stays at chunk x N."""
    gh, gw = grid
    yy, xx = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    yy, xx = yy.reshape(-1), xx.reshape(-1)
    out = []
    for start in range(0, feats.shape[0], chunk):
        rows = slice(start, start + chunk)
        dist = (2 - 2 * feats[rows] @ feats.T).clamp_min(0).sqrt()
        near = ((yy[rows, None] - yy[None]).abs() <= radius) & ((xx[rows, None] - xx[None]).abs() <= radius)
        dist.masked_fill_(near, float("inf"))
        out.append(dist.topk(k, dim=1, largest=False).values.mean(dim=1))
    return torch.cat(out)


@torch.inference_mode()
def vgg_knn(image: np.ndarray, k: int = 5, radius: int = 4, sigma: float = 4.0) -> np.ndarray:
    """VGG19 self-similarity: each location's mean distance to its k nearest locations of the same
    image outside a (2 * radius + 1)^2 neighbourhood, on the relu3_1 grid (1/4 resolution) with
    relu2_2 average-pooled onto it; each layer is L2-normalised per location."""
    h, w = _check(image).shape[:2]
    gh, gw = -(-h // 4), -(-w // 4)
    if gh * gw < (2 * radius + 1) ** 2 + k:  # every location needs k candidates
        raise ValueError(f"image {h}x{w} too small for vgg_knn with radius {radius} and k {k}")
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    acts = _vgg()(x)
    feats = [F.normalize(F.adaptive_avg_pool2d(acts[name], (gh, gw)), dim=1) for name in VGG_KNN_LAYERS]
    feats = torch.cat(feats, dim=1) / len(feats) ** 0.5  # unit norm again
    score = _knn_distance(feats[0].reshape(feats.shape[1], -1).T.contiguous(), (gh, gw), k, radius)
    up = F.interpolate(score.reshape(1, 1, gh, gw), size=(h, w), mode="bilinear", align_corners=False)
    return _blur(up[0, 0].numpy().astype(np.float32), sigma)


BASELINES: dict[str, Baseline] = {
    "blur_residual": blur_residual,
    "local_stats": local_stats,
    "vgg_knn": vgg_knn,
}
