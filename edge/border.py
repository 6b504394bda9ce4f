"""A camera's typical anomaly map near the frame's border, learned from its normal frames, and the map put
on its interior's footing.

Maps run hot near a frame's border: VGG19's receptive fields and the self-similarity's neighbourhoods
reach past it (the map's 99th percentile within 1 px of the border is 1.1-1.2x the interior's on
real-dev's normal tiles, 1.3-1.6x on the demo's textures, falling off over ~16 px; docs/ablations.md
section 19), so a normal frame's image score often lies on its border and a small defect's frame ranks
below normal ones. The camera keeps, for its last `window` normal frames, the map's median and 99th
percentile in bands of distance to the nearest border (BANDS); once it has `min_frames` of them (16 by
default, as many as the memory needs before it is searched, so that the map changes once, not twice), it
maps each band linearly onto the interior's, median onto median and 99th percentile onto 99th percentile,
with each band's typical values (their medians over the frames). Label-free and per camera; a defect on
the border still stands out against what is normal there. Until then the image score reads the map from SCORE_INSET px
inside the border (`scored`): on the uncorrected border the score was the border's heat, whose swings set the
camera's first normal (section 66: two of a brick camera's first 16 normal frames were events at 3).
"""
from __future__ import annotations

from collections import deque
from functools import lru_cache

import numpy as np

from .config import BorderConfig

BANDS = (0, 1, 2, 4, 8, 12, 16, 24)  # px from the border where each band starts; the last band is the interior
MIN_INTERIOR = 0.25  # the interior's share of a frame below which it is no reference (frames under ~100 px a side)
SCORE_INSET = 8  # px from the border the image score leaves out until the profile is ready (docs/ablations.md s. 66)


@lru_cache(maxsize=16)
def band_index(height: int, width: int) -> np.ndarray:
    """Each pixel's band: how far it lies from the frame's nearest border, in BANDS."""
    y, x = np.arange(height)[:, None], np.arange(width)[None, :]
    distance = np.minimum(np.minimum(y, height - 1 - y), np.minimum(x, width - 1 - x))
    return (np.searchsorted(BANDS, distance, side="right") - 1).astype(np.intp)


def has_interior(height: int, width: int) -> bool:
    """Whether a height x width frame's interior (BANDS[-1] px from every border) is MIN_INTERIOR of it at least: a
    reference a profile can be learnt against (frames from ~96 px a side)."""
    inner = max(0, height - 2 * BANDS[-1]) * max(0, width - 2 * BANDS[-1])
    return inner >= MIN_INTERIOR * height * width


def band_stats(amap: np.ndarray) -> np.ndarray:
    """(len(BANDS), 2): the map's median and 99th percentile in each band (NaN where a band is empty, all NaN
    where the frame has no interior, `has_interior`: then nothing is corrected)."""
    index = band_index(*amap.shape)
    out = np.full((len(BANDS), 2), np.nan)
    if not has_interior(*amap.shape):
        return out
    for b in range(len(BANDS)):
        values = amap[index == b]
        if values.size:
            out[b] = np.percentile(values, (50, 99))
    return out


class BorderProfile:
    """One camera's border bands: `observe` a normal frame's map, `apply` the correction to any map."""

    def __init__(self, cfg: BorderConfig):
        self.cfg = cfg
        self.frames: deque[np.ndarray] = deque(maxlen=cfg.window)

    def reset(self) -> None:
        self.frames.clear()

    @property
    def ready(self) -> bool:
        return len(self.frames) >= self.cfg.min_frames

    def observe(self, amap: np.ndarray) -> None:
        """Take a normal frame's (uncorrected) map."""
        stats = band_stats(amap)
        if np.isfinite(stats).all():  # a frame with an interior has every band
            self.frames.append(stats)

    def gains(self) -> tuple[np.ndarray, np.ndarray]:
        """Per band (gain, offset) that put it on the interior's footing: value -> gain x value + offset
        (1, 0 until `min_frames` normal frames)."""
        gain, offset = np.ones(len(BANDS)), np.zeros(len(BANDS))
        if not self.ready:
            return gain, offset
        median, top = np.median(np.stack(self.frames), axis=0).T  # kept frames have every band (`observe`)
        spread = top - median
        ok = (spread > 1e-6) & (spread[-1] > 1e-6)
        gain[ok] = spread[-1] / spread[ok]
        offset[ok] = median[-1] - gain[ok] * median[ok]
        return gain, offset

    def apply(self, amap: np.ndarray) -> np.ndarray:
        """The map with each band on the interior's footing (unchanged until `min_frames` normal frames)."""
        if not self.ready:
            return amap
        gain, offset = self.gains()
        index = band_index(*amap.shape)
        return (gain[index] * amap + offset[index]).astype(amap.dtype)

    def inset(self, height: int, width: int) -> int:
        """Px from the border the image score leaves out of a height x width map: SCORE_INSET until the profile is
        ready (its uncorrected heat would be the score and its swings the camera's normal); 0 once it is, and on a
        frame too small to ever have one (`has_interior`), which is scored whole, as before section 66."""
        return 0 if self.ready or not has_interior(height, width) else SCORE_INSET

    def scored(self, amap: np.ndarray) -> np.ndarray:
        """The part of a map the image score reads (`inset`)."""
        k = self.inset(*amap.shape)
        return amap[k : amap.shape[0] - k, k : amap.shape[1] - k]

    def state_dict(self) -> dict:
        return {"frames": [f.tolist() for f in self.frames]}

    def load_state_dict(self, state: dict) -> None:
        self.frames = deque((np.asarray(f, dtype=np.float64) for f in state["frames"]), maxlen=self.cfg.window)
