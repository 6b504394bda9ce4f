"""The frames a detector takes: any size from MIN_SIDE per side up; larger than `max_pixels` is
scaled down (area interpolation, aspect kept) before fitting and scoring, and the map scaled back up."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .config import MIN_SIDE


class FrameError(ValueError):
    """A frame the detector cannot take (wrong type, shape or size); the message says which."""


def check_frame(image: np.ndarray) -> np.ndarray:
    """A uint8 HxWx3 RGB frame (HxW gray is expanded), at least MIN_SIDE px on each side."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise FrameError(f"expected a uint8 image, got {getattr(image, 'dtype', type(image).__name__)}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise FrameError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise FrameError(f"a {w}x{h} frame is below the minimum of {MIN_SIDE}x{MIN_SIDE} px")
    return image


def working_size(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """(h, w) the frame is fitted and scored at: as is, or scaled down to at most `max_pixels`
    (never below MIN_SIDE on a side)."""
    if height * width <= max_pixels:
        return height, width
    f = math.sqrt(max_pixels / (height * width))
    return max(MIN_SIDE, int(height * f)), max(MIN_SIDE, int(width * f))


def to_working_size(image: np.ndarray, max_pixels: int) -> np.ndarray:
    h, w = working_size(*image.shape[:2], max_pixels)
    return image if (h, w) == image.shape[:2] else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def to_frame_size(amap: np.ndarray, height: int, width: int) -> np.ndarray:
    """A map computed at the working size, back at the frame's size (bilinear)."""
    if amap.shape == (height, width):
        return amap
    return cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR)
