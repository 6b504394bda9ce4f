"""A normal stream's raw and calibrated image scores through one Detector as the node runs it, for
calibration_replay.py's false events (docs/ablations.md section 59). SOURCE: a folder of frames (sorted) or
`synthetic:TEXTURE` (the demo's synthetic camera, no defects).

    [CONFIG='{"calibration": {...}}'] python docs/ablation_runs/regions/normal_raws.py SOURCE FRAMES > OUT.json
    # ~0.3-0.5 s per frame
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.images import read_rgb
from pipeline.config import SyntheticSourceConfig
from pipeline.sources import SyntheticReader

source, count = sys.argv[1], int(sys.argv[2])
if source.startswith("synthetic:"):
    reader = SyntheticReader(SyntheticSourceConfig(name="normal", kind="synthetic", textures=[source[10:]], size=256,
                                                   defect_prob=0.0, seed=7))
    reader.open()
    frames = (reader.read().image for _ in range(count))
else:
    frames = (read_rgb(p) for p in sorted(Path(source).glob("*.png"))[:count])
det = Detector(SSDNetConfig.model_validate(json.loads(os.environ.get("CONFIG", "{}"))))
raw, calibrated, moved, weights = [], [], [], []
for i, image in enumerate(frames):
    weights.append(round(det.memory.blend[1], 5))  # the memory's weight in this frame's score
    d = det.process(image)
    raw.append(round(d.score, 5))
    calibrated.append(round(d.calibrated, 3))
    if d.normal_moved:
        moved.append(i)
print(json.dumps({"source": source, "config": os.environ.get("CONFIG", "{}"), "raw": raw, "calibrated": calibrated,
                  "weights": weights, "moved_at": moved}))
