"""Anomalous regions: connected components of a thresholded anomaly map."""
from __future__ import annotations

import cv2
import numpy as np

from edge.overlay import standardised

from .protocol import Region


def find_regions(amap: np.ndarray, threshold: float, min_area: int = 1, max_regions: int = 32) -> tuple[Region, ...]:
    """The `max_regions` largest 8-connected components, with at least `min_area` pixels, where the map
    lies more than `threshold` of its own standard deviations above its mean (whatever the map's
    units); each region's `peak` is in the map's units."""
    binary = (standardised(amap) > threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    regions = []
    for i in 1 + np.argsort(-areas, kind="stable")[:max_regions]:
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            break
        window = amap[y : y + h, x : x + w]
        peak = float(window[labels[y : y + h, x : x + w] == i].max())
        regions.append(Region(bbox=(x, y, w, h), area=area, peak=peak))
    return tuple(regions)
