"""The frames a detector takes: 8-bit, any size from MIN_SIDE per side up; larger than `max_pixels` is
scaled down (area interpolation, aspect kept) before fitting and scoring, and the map scaled back up.
A machine-vision camera's 16-bit frames come to 8 bits through `to_uint8` first."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .config import MIN_SIDE


class FrameError(ValueError):
    """A frame the detector cannot take (wrong type, shape or size); the message says which."""


def check_frame(image: np.ndarray) -> np.ndarray:
    """A uint8 HxWx3 RGB frame (HxW gray is expanded), at least MIN_SIDE px on each side."""
    if not isinstance(image, np.ndarray):  # a torch tensor's dtype reads torch.uint8: "expected uint8, got torch.uint8"
        kind = type(image)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        raise FrameError(f"expected a uint8 image as a numpy array, got a {name}")
    if image.dtype != np.uint8:
        hint = " (a 16-bit frame: convert it with edge.frames.to_uint8)" if image.dtype == np.uint16 else ""
        raise FrameError(f"expected a uint8 image, got {image.dtype}{hint}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise FrameError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise FrameError(f"a {w}x{h} frame is below the minimum of {MIN_SIDE}x{MIN_SIDE} px")
    return image


BLANK_SPAN = 2  # a frame whose values (on a sparse grid of its pixels) span no more grey levels than this is blank


def value_span(image: np.ndarray) -> int:
    """The grey levels a frame's values span (every 7th row's every 9th pixel, the widest channel): a lens cap, the
    light off or a dead sensor spans BLANK_SPAN or fewer. Strides of no common factor with a pattern's usual pitch:
    every 8th pixel saw one value of a checkerboard or of a plate perforated at an 8 px pitch, a "blank" frame."""
    return int(np.ptp(image[::7, ::9], axis=(0, 1)).max())


STILL_SHIFT = 2  # px: a frame against itself moved this far is the yardstick of a change


def grey(image: np.ndarray) -> np.ndarray:
    """A uint8 RGB frame in grey (uint8), as `change` compares frames."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def change(frame: np.ndarray, reference: np.ndarray) -> float:
    """How much a frame (`grey`) differs from an earlier one: their mean absolute difference, less its mean (a
    flicker of the light is no change), over the frame's own against itself moved STILL_SHIFT px. At least 0.77
    between two products of one size on the dev sets (1.9 typically); 0.05-0.25 for one product filmed again under
    1-2 grey levels of sensor noise, 0.2-0.4 under 4 (docs/ablations.md section 76); inf for another size."""
    if frame.shape != reference.shape:
        return math.inf
    k, flicker = STILL_SHIFT, cv2.mean(frame)[0] - cv2.mean(reference)[0]
    differs = cv2.mean(cv2.absdiff(frame, cv2.add(reference, flicker)))[0]
    yardstick = cv2.mean(cv2.absdiff(frame[k:], frame[:-k]))[0] + cv2.mean(cv2.absdiff(frame[:, k:], frame[:, :-k]))[0]
    return differs / max(yardstick / 2, 1e-6)


DEPTHS = (8, 10, 12, 14, 16)  # the bits a 16-bit frame's values may fill: Mono8 to Mono16, stored LSB-aligned
OUTLIERS = 1e-4  # the share of a 16-bit frame's values that may lie above the bits it fills: hot pixels, a glint


def bit_depth(image: np.ndarray) -> int:
    """How many bits a frame's values fill: 8 for uint8; for uint16 the smallest of `DEPTHS` that holds all its
    values but a share of OUTLIERS (a Mono12 camera's frame is 12, not 16: read as 16 bits it would be 1/16 as
    bright; one hot pixel at 65535 made it so, and its defect was missed). The outliers saturate at 255."""
    if image.dtype == np.uint8:
        return 8
    top = int(image.max(initial=0))
    bits = next(bits for bits in DEPTHS if top < 1 << bits)  # a uint16 value always fits 16
    allowed = int(image.size * OUTLIERS)
    while bits > DEPTHS[0] and np.count_nonzero(image >= 1 << (bits - 2)) <= allowed:  # the rest fit 2 bits fewer
        bits -= 2
    return bits


def to_uint8(image: np.ndarray, bits: int | None = None) -> np.ndarray:
    """A uint8 or uint16 frame as uint8: its `bits`-bit range (default `bit_depth(image)`) onto 0-255, rounded;
    values above the range saturate. Any other dtype: FrameError."""
    if image.dtype == np.uint8:
        return image
    if image.dtype != np.uint16:
        raise FrameError(f"expected an 8- or 16-bit image, got {image.dtype} (convert it to 8 or 16 bits)")
    bits = bit_depth(image) if bits is None else bits
    return cv2.convertScaleAbs(image, alpha=255 / ((1 << bits) - 1))


def working_size(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """(h, w) the frame is fitted and scored at: as is, or scaled down to at most `max_pixels`, aspect kept and
    never below MIN_SIDE on a side. A frame too long and thin for both (a line-scan strip over `max_pixels` /
    MIN_SIDE px long): FrameError."""
    if height * width <= max_pixels:
        return height, width
    f = math.sqrt(max_pixels / (height * width))
    h, w = max(MIN_SIDE, int(height * f)), max(MIN_SIDE, int(width * f))
    if h * w > max_pixels:
        raise FrameError(f"a {width}x{height} frame cannot be scaled down to max_pixels ({max_pixels}) with its "
                         f"aspect kept and each side at least {MIN_SIDE} px: cut it into shorter tiles (a source's "
                         "`crop`), or raise max_pixels")
    return h, w


def to_working_size(image: np.ndarray, max_pixels: int) -> np.ndarray:
    h, w = working_size(*image.shape[:2], max_pixels)
    return image if (h, w) == image.shape[:2] else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def to_frame_size(amap: np.ndarray, height: int, width: int) -> np.ndarray:
    """A map computed at the working size, back at the frame's size (bilinear)."""
    if amap.shape == (height, width):
        return amap
    return cv2.resize(amap, (width, height), interpolation=cv2.INTER_LINEAR)
