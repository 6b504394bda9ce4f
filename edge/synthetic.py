"""Synthetic textures with defects and exact masks, for tests, the synthetic camera and the demo.

Textures are crops of scikit-image's bundled 512x512 grayscale photos (shipped in the wheel, no
download). Defects change only the pixels under their mask, by at least 40 grey levels on average,
and cover 0.3-5 % of the image.
"""
from __future__ import annotations

from functools import cache

import cv2
import numpy as np
from scipy import ndimage
from skimage import data

TEXTURES = ("brick", "grass", "gravel")
DEFECTS = ("scratch", "stain", "hole")
MIN_AREA, MAX_AREA = 0.003, 0.05  # mask area, fraction of the image
MIN_CONTRAST = 40.0  # mean |change| under the mask, grey levels
_MAX_TRIES = 100


@cache
def _source(name: str) -> np.ndarray:
    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; choose from {TEXTURES}")
    image = getattr(data, name)()
    image.setflags(write=False)
    return image


def texture(name: str, size: int = 256, rng: np.random.Generator | None = None) -> np.ndarray:
    """A random size x size crop of texture `name` as uint8 HxWx3 RGB (R = G = B).

    The 512 px source is mirror-tiled to 1.5x the size where it is smaller, so crops of any size differ (a source as
    large as the crop gave one frame over and over: a stopped line, which teaches a camera nothing).
    """
    if size < 16:
        raise ValueError(f"size must be at least 16, got {size}")
    rng = rng if rng is not None else np.random.default_rng()
    src = _source(name)
    room = size + size // 2
    if room > min(src.shape):
        src = np.pad(src, ((0, room - src.shape[0]), (0, room - src.shape[1])), mode="symmetric")
    y = rng.integers(0, src.shape[0] - size + 1)
    x = rng.integers(0, src.shape[1] - size + 1)
    crop = src[y : y + size, x : x + size]
    return np.repeat(crop[:, :, None], 3, axis=2)


def _blob(shape: tuple[int, int], rng: np.random.Generator, area: float) -> np.ndarray:
    """A smooth field, positive inside an irregular, rotated ellipse of roughly `area` pixels."""
    h, w = shape
    radius = np.sqrt(area / np.pi)
    aspect = rng.uniform(0.6, 1.6)
    ry, rx = radius / np.sqrt(aspect), radius * np.sqrt(aspect)
    cy = rng.uniform(ry, h - ry) if h > 2 * ry else h / 2
    cx = rng.uniform(rx, w - rx) if w > 2 * rx else w / 2
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    dist = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=max(radius / 3, 1.0), mode="wrap")
    noise /= noise.std() + 1e-12
    return 1.0 - dist + 0.25 * noise


def _shift_sign(values: np.ndarray, amplitude: float, rng: np.random.Generator) -> float:
    """A random darker/lighter direction, flipped if clipping at 0/255 would weaken it."""
    sign = rng.choice((-1.0, 1.0))
    room = 255.0 - values.mean() if sign > 0 else values.mean()
    return sign if room >= amplitude / 2 else -sign


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, s], [-s, c]])


def _scratch(gray: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    h, w = gray.shape
    width = int(rng.integers(1, 4))
    length = rng.uniform(MIN_AREA * 1.5, MAX_AREA / 2) * h * w / width
    n_seg = int(rng.integers(2, 6))
    step = length / n_seg
    lo, hi = np.array((0.05 * w, 0.05 * h)), np.array((0.95 * w, 0.95 * h))
    points = [rng.uniform(lo, hi)]
    direction = np.array([1.0, 0.0]) @ _rotation(rng.uniform(0, 2 * np.pi))
    for _ in range(n_seg):
        direction = direction @ _rotation(rng.normal(0, 0.4))
        nxt = points[-1] + step * direction
        out = (nxt < lo) | (nxt > hi)
        direction[out] *= -1  # bounce off the margins instead of running along the border
        points.append(np.clip(points[-1] + step * direction, lo, hi))
    canvas = np.zeros((h, w), dtype=np.uint8)
    cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, 1, thickness=width, lineType=cv2.LINE_8)
    mask = canvas.astype(bool)
    amplitude = rng.uniform(70, 120)
    delta = np.zeros((h, w))
    delta[mask] = _shift_sign(gray[mask], amplitude, rng) * amplitude
    return delta, mask


def _stain(gray: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    field = _blob(gray.shape, rng, rng.uniform(0.008, 0.035) * gray.size)
    envelope = np.clip(field, 0, None)
    envelope /= envelope.max() + 1e-12
    mask = envelope > 0.25
    mask = ndimage.binary_fill_holes(mask)
    amplitude = rng.uniform(70, 110)
    sign = _shift_sign(gray[mask], amplitude, rng)
    # a soft profile that still shifts the rim of the mask by 40 % of the amplitude
    delta = np.where(mask, sign * amplitude * (0.4 + 0.6 * envelope), 0.0)
    return delta, mask


def _hole(gray: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    mask = _blob(gray.shape, rng, rng.uniform(0.006, 0.03) * gray.size) > 0
    inside = gray[mask]
    amplitude = rng.uniform(60, 120)
    fill = np.clip(inside.mean() + _shift_sign(inside, amplitude, rng) * amplitude, 0, 255)
    kept = rng.uniform(0, 0.3)  # a little of the original texture shows through
    target = kept * inside + (1 - kept) * fill + rng.normal(0, 3, inside.shape)
    delta = np.zeros(gray.shape)
    delta[mask] = target - inside
    return delta, mask


_DRAW = {"scratch": _scratch, "stain": _stain, "hole": _hole}


def draw_defect(image: np.ndarray, rng: np.random.Generator, kind: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Add one defect to a uint8 HxWx3 image; return (defected copy, bool HxW mask).

    `kind` is one of DEFECTS (random if None). Only pixels under the mask change; the mask covers
    0.3-5 % of the image and the mean change under it is at least 40 grey levels.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    if min(image.shape[:2]) < 16:
        raise ValueError(f"image too small for a defect: {image.shape[:2]}")
    kind = kind if kind is not None else str(rng.choice(DEFECTS))
    if kind not in _DRAW:
        raise ValueError(f"unknown defect kind {kind!r}; choose from {DEFECTS}")
    original = image.astype(np.float64)
    gray = original.mean(axis=2)
    for _ in range(_MAX_TRIES):
        delta, mask = _DRAW[kind](gray, rng)
        area = mask.mean()
        if not MIN_AREA <= area <= MAX_AREA:
            continue
        out = np.clip(np.rint(original + delta[:, :, None]), 0, 255).astype(np.uint8)
        contrast = np.abs(out[mask].astype(np.float64) - original[mask]).mean()
        if contrast >= MIN_CONTRAST:
            return out, mask
    raise RuntimeError(f"could not draw a visible {kind!r} defect on a {image.shape[:2]} image")


def sample(name: str, size: int = 256, rng: np.random.Generator | None = None,
           defect_prob: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A texture crop with a defect drawn with probability `defect_prob`: (uint8 HxWx3, bool HxW mask)."""
    rng = rng if rng is not None else np.random.default_rng()
    image = texture(name, size, rng)
    if rng.random() < defect_prob:
        return draw_defect(image, rng)
    return image, np.zeros(image.shape[:2], dtype=bool)
