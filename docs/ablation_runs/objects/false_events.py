"""An object line's normal frames through one Detector as the node runs it: false events (a calibrated score at or
above node.threshold's default, 3.0) per WINDOW (50) frames, the frames at which the camera's normal moved, how many
frames' cells went into the bank and the memory blend's b at frames 15, 30, ... (docs/ablations.md sections 54, 56).

    python docs/ablation_runs/objects/false_events.py OUT/objects-stream/nut ['{"memory": {...}}' [FRAMES [WINDOW]]]
    # ~1.5 min for 300 frames
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2

from edge.config import SSDNetConfig
from edge.detector import Detector

THRESHOLD = 3.0

folder, overrides = Path(sys.argv[1]), json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
frames, window = (int(sys.argv[3]) if len(sys.argv) > 3 else None), (int(sys.argv[4]) if len(sys.argv) > 4 else 50)
det = Detector(SSDNetConfig.model_validate(overrides))
calibrated, moved, blend_b = [], [], []
for i, path in enumerate(sorted(folder.glob("*.png"))[:frames]):
    detection = det.process(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    calibrated.append(detection.calibrated)
    if detection.normal_moved:
        moved.append(i)
    if i and i % 15 == 0:
        blend_b.append(round(det.memory.blend[1], 2))
print(json.dumps({"stream": str(folder), "config": overrides,
                  f"false_events_per_{window}": [sum(c >= THRESHOLD for c in calibrated[i:i + window])
                                                  for i in range(0, len(calibrated), window)],
                  "moved_at": moved, "frames_in_bank": det.memory.frames, "blend_b_every_15": blend_b}))
