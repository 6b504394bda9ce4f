"""An object line's normal frames through one Detector as the node runs it: false events (a calibrated score at or
above node.threshold's default, 3.0) per 50 frames, the frames at which the camera's normal moved, and how many
frames' cells went into the bank (docs/ablations.md section 54).

    python docs/ablation_runs/objects/false_events.py OUT/objects-stream/nut ['{"memory": {...}}']   # ~2 min
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2

from edge.config import SSDNetConfig
from edge.detector import Detector

THRESHOLD, WINDOW = 3.0, 50

folder, overrides = Path(sys.argv[1]), json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
det = Detector(SSDNetConfig.model_validate(overrides))
calibrated, moved = [], []
for i, path in enumerate(sorted(folder.glob("*.png"))):
    detection = det.process(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    calibrated.append(detection.calibrated)
    if detection.normal_moved:
        moved.append(i)
print(json.dumps({"stream": str(folder), "config": overrides,
                  f"false_events_per_{WINDOW}": [sum(c >= THRESHOLD for c in calibrated[i:i + WINDOW])
                                                  for i in range(0, len(calibrated), WINDOW)],
                  "moved_at": moved, "frames_in_bank": det.memory.frames}))
