"""Anomalous regions: connected components of a thresholded anomaly map."""
from __future__ import annotations

import cv2
import numpy as np

from .protocol import Region


def find_regions(amap: np.ndarray, threshold: float, min_area: int = 1, max_regions: int = 32,
                 min_peak: float | None = None) -> tuple[Region, ...]:
    """The `max_regions` largest 8-connected components, with at least `min_area` pixels, where the map
    lies more than `threshold` of its own standard deviations above its mean (whatever the map's
    units), and, with `min_peak`, whose peak (in the map's units) exceeds it.

    The outline is relative to the frame's own spread, so on a good frame it boxes the frame's
    noise, and the self-similarity map's slight rise toward the image borders (strongest at the
    right border of non-square frames) came out as boxes glued to the left and right edges. The node
    passes its image threshold as `min_peak` (the map is in the image score's units): a region is
    shown only where the map itself reaches an anomalous level, so a good frame has no boxes."""
    binary = ((amap - amap.mean()) > threshold * (amap.std() + 1e-8)).astype(np.uint8)  # in the map's own stds
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    regions = []
    for i in 1 + np.argsort(-areas, kind="stable"):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area or len(regions) >= max_regions:
            break
        window = amap[y : y + h, x : x + w]
        peak = float(window[labels[y : y + h, x : x + w] == i].max())
        if min_peak is not None and not peak > min_peak:
            continue
        regions.append(Region(bbox=(x, y, w, h), area=area, peak=peak))
    return tuple(regions)
