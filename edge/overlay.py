"""Heat-map overlays of anomaly maps, for people who want to look rather than read."""
from __future__ import annotations

import cv2
import numpy as np

# the map is shown in units of its own std above its mean: 0 = typical, >= 4 = far out
DEFAULT_RANGE = (0.0, 6.0)


def standardised(amap: np.ndarray) -> np.ndarray:
    """The map in units of its own standard deviation above its mean (whatever the map's units)."""
    return (amap - amap.mean()) / (amap.std() + 1e-8)


def heatmap_overlay(image: np.ndarray, amap: np.ndarray, vrange: tuple[float, float] = DEFAULT_RANGE,
                    alpha: float = 0.5) -> np.ndarray:
    """uint8 HxWx3 RGB image + float HxW map -> uint8 HxWx3 RGB overlay (JET colormap), the map
    standardised by its own mean and std and `vrange` spanning the colours."""
    lo, hi = vrange
    scaled = np.clip((standardised(amap.astype(np.float32)) - lo) / max(hi - lo, 1e-6), 0, 1)
    heat = cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    return cv2.addWeighted(image, 1 - alpha, heat, alpha, 0)


def write_rgb(path, image: np.ndarray) -> None:
    """Write an RGB uint8 image (PNG/JPEG by suffix); raises OSError when OpenCV cannot."""
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, ::-1])):
        raise OSError(f"could not write image {path}")


def read_rgb(path) -> np.ndarray:
    """Read an image file as uint8 HxWx3 RGB; raises FileNotFoundError when it cannot be read."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return image[:, :, ::-1].copy()
