"""Anomalous regions: connected components of a thresholded anomaly map."""
from __future__ import annotations

import cv2
import numpy as np

from .protocol import Region


def find_regions(amap: np.ndarray, threshold: float, min_area: int = 1, max_regions: int = 32,
                 min_peak: float | None = None, event: bool = False, inset: int = 0) -> tuple[Region, ...]:
    """The `max_regions` largest 8-connected components, with at least `min_area` pixels, where the map
    lies more than `threshold` of its own standard deviations above its mean (whatever the map's
    units) or, with `min_peak`, above `min_peak`; with `min_peak`, those whose peak exceeds it.

    The outline relative to the frame's own spread boxes a good frame's noise, and the self-similarity
    map's slight rise toward the image borders (strongest at the right border of non-square frames)
    came out as boxes glued to the left and right edges. The node passes its image threshold as
    `min_peak` (the map is in the image score's units): a region is shown only where the map itself
    reaches an anomalous level, so a good frame has no boxes; and a defect over much of the frame,
    which raises the map's mean and std with it, is outlined where the map passes the threshold.

    `event`: the frame is anomalous, so it says where even when no component reaches `min_peak`: then
    its one component with the highest peak. The image score reads the feature distance before the
    map's spacing term (docs/ablations.md sections 21, 28), whose top can pass the threshold where
    the map's does not (section 58).

    `inset`: components that lie wholly within this many px of the map's border are left out: the image score did
    not read there (a camera's first frames, before its border profile is ready: edge.border, section 66); an event
    whose components all lie there gets the highest-peaked of them."""
    binary = (amap - amap.mean()) > threshold * (amap.std() + 1e-8)  # in the map's own stds
    if min_peak is not None:  # and where the map reaches the anomalous level: a defect over much of the frame
        binary |= amap > min_peak  # raises the map's mean and std with it (a fray: no pixel 3 std above its mean)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    # the components reaching past the inset (all of them without one: no pass over the labels per frame)
    inside = range(n) if not inset else set(np.unique(labels[inset : amap.shape[0] - inset,
                                                                inset : amap.shape[1] - inset]).tolist())
    # strongest: the highest-peaked component, for an event with no region (one inside the inset if any is)
    regions, strongest = [], None
    for i in 1 + np.argsort(-areas, kind="stable"):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area or len(regions) >= max_regions:
            break
        window = amap[y : y + h, x : x + w]
        region = Region(bbox=(x, y, w, h), area=area, peak=float(window[labels[y : y + h, x : x + w] == i].max()))
        if i in inside and (min_peak is None or region.peak > min_peak):
            regions.append(region)
        elif strongest is None or (i in inside, region.peak) > (strongest[0], strongest[1].peak):
            strongest = (i in inside, region)
    return tuple(regions) if regions or not event or strongest is None else (strongest[1],)
