"""Where an event says its defect is: each category of an MVTec-style set streamed through one Detector as `ssdnet
eval --mode stream` streams it (after N warm-up frames), the node's regions of every frame whose calibrated score
passes node.threshold's default (3.0), with and without the event fallback of `pipeline.regions.find_regions`
(docs/ablations.md section 58). A region hits when its box holds a ground-truth pixel. `frames` lists every test
frame's [category, label, calibrated score, raw score, calibration median, scale, the memory's weight in the score],
`warmup` each category's warm-up frames' [raw score, the memory's weight] (what the calibration saw before them:
docs/ablation_runs/regions/calibration_replay.py).

    [CONFIG='{"calibration": {...}}'] python docs/ablation_runs/regions/event_regions.py DATASET [WARMUP_DIR N]
    # ~1-3 min per set at N 0-50, ~10 at 200

`before` is the node's rule before section 58 (`head_regions`): the components 3 of the map's own std above its mean
whose peak passes the threshold.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.images import read_rgb
from pipeline.regions import find_regions
from tools.eval.dataset import list_categories, load_category
from tools.eval.evaluate import warmup_paths

THRESHOLD, REGION_THRESHOLD, MIN_AREA, MAX_REGIONS = 3.0, 3.0, 16, 32


def head_regions(amap: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The boxes of `find_regions(amap, 3.0, 16, 32, min_peak=3.0)` before section 58: the components 3 of the map's
    own std above its mean (without `min_peak` the outline is that alone), those whose peak passes the threshold."""
    every = find_regions(amap, REGION_THRESHOLD, MIN_AREA, max_regions=amap.size)
    return [r.bbox for r in every if r.peak > THRESHOLD][:MAX_REGIONS]


def memory_weight(det: Detector) -> float:
    """The memory's weight in the next frame's score (the blend's b; 0 before it enters)."""
    return round(det.memory.blend[1], 5) if det.memory is not None else 0.0


def hits(boxes, mask: np.ndarray) -> bool:
    return any(mask[y : y + h, x : x + w].any() for (x, y, w, h) in boxes)


root = Path(sys.argv[1])
warmup, n = (Path(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (None, 0)
det = Detector(SSDNetConfig.model_validate(json.loads(os.environ.get("CONFIG", "{}"))))
rows, frames, warmed = [], [], {}
for category in list_categories(root):
    det.reset()
    warmed[category] = []
    for path in warmup_paths(warmup, category, n) if warmup else []:
        weight = memory_weight(det)
        warmed[category].append([round(det.process(read_rgb(path)).score, 5), weight])
    for sample in load_category(root, category):
        weight = memory_weight(det)
        d = det.process(sample.image)
        frames.append([category, int(sample.label), round(d.calibrated, 3), round(d.score, 5),
                       *(round(float(v), 5) for v in d.calibration), weight])
        if d.calibrated <= THRESHOLD:
            continue
        amap = d.calibrated_map()
        before = head_regions(amap)
        after = [r.bbox for r in find_regions(amap, REGION_THRESHOLD, MIN_AREA, MAX_REGIONS, min_peak=THRESHOLD,
                                               event=True)]
        rows.append(dict(category=category, frame=sample.path.name, defective=bool(sample.label),
                         score=round(d.calibrated, 2), map_top=round(float(amap.max()), 2),
                         regions_before=len(before), regions_after=len(after),
                         hit_before=hits(before, sample.mask), hit_after=hits(after, sample.mask)))
events = len(rows)
empty = [r for r in rows if not r["regions_before"]]
defective = [r for r in rows if r["defective"]]
print(json.dumps(dict(dataset=str(root), warmup_frames=n, config=os.environ.get("CONFIG", "{}"),
                      events=events, defective_events=len(defective),
                      events_without_region_before=len(empty),
                      events_without_region_after=sum(not r["regions_after"] for r in rows),
                      of_those_defective=sum(r["defective"] for r in empty),
                      fallback_hits=sum(r["hit_after"] for r in empty),
                      defective_events_located_before=sum(r["hit_before"] for r in defective),
                      defective_events_located_after=sum(r["hit_after"] for r in defective),
                      empty_events=empty, frames=frames, warmup=warmed), indent=1))
