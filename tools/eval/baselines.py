"""Zero-shot reference baselines: each maps a uint8 HxWx3 RGB image to a float32 HxW anomaly map
(higher = more anomalous), judging the image on its own."""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edge.config import SSDNetConfig
from edge.frames import to_frame_size, to_working_size
from edge.knn import cell_size, grid_features, knn_distance
from edge.local_stats import local_stats_map
from edge.patches import pad_to_multiple
from edge.vgg import VGG19Features

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


@torch.inference_mode()
def local_stats(image: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """Local-statistics outliers (edge.local_stats with robust z-scores): |z(local mean)| + |z(local
    std)| of the intensity, plus |z(local mean)| of each channel's colour offset (zero for gray
    images), in a Gaussian window, against the image-wide median and MAD."""
    x = torch.from_numpy(_check(image)).permute(2, 0, 1)[None]
    return local_stats_map(x, sigma)[0, 0].numpy()


VGG_KNN_LAYERS = ("relu2_2", "relu3_1")
KNN_MAX_CELLS = 4096
MAX_PIXELS = SSDNetConfig.model_fields["max_pixels"].default  # as the detector scales a frame down


@lru_cache(maxsize=1)
def _vgg() -> VGG19Features:
    """The VGG19 trunk, loaded once per process."""
    return VGG19Features(layers=VGG_KNN_LAYERS)


@torch.inference_mode()
def vgg_knn(image: np.ndarray, k: int = 5, radius: int = 4, sigma: float = 4.0,
            max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """VGG19 self-similarity (edge.knn): each location's mean distance to its k nearest locations of
    the same image outside a (2 * radius + 1)^2 neighbourhood, on a grid of 4 px cells (coarser for
    images of more than 4096 cells), relu2_2 and relu3_1 pooled onto it. Any frame size: the image is
    padded (reflected) to a multiple of the cell first, so every VGG19 layer's grid divides it. An image
    of more than `max_pixels` is scored scaled down to it and its map scaled back up, as the detector
    does (`edge.frames.working_size`): VGG19 on a whole 4K frame took 71 s and 8 GB."""
    h, w = _check(image).shape[:2]
    image = to_working_size(image, max_pixels)
    sh, sw = image.shape[:2]
    cell = cell_size(sh, sw, 4, KNN_MAX_CELLS)
    x = pad_to_multiple(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0, cell)
    score = knn_distance(grid_features(_vgg()(x), tuple(x.shape[-2:]), cell), k, radius)
    up = F.interpolate(score, scale_factor=cell, mode="bilinear", align_corners=False)[0, 0, :sh, :sw]
    return to_frame_size(_blur(up.numpy().astype(np.float32), sigma), h, w)


BASELINES: dict[str, Baseline] = {
    "blur_residual": blur_residual,
    "local_stats": local_stats,
    "vgg_knn": vgg_knn,
}
