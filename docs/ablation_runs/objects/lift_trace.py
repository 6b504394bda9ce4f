"""An object's first normal frames through one default Detector, one line each: raw score, the memory's lift (with
memory_lift.patch applied; 0 without it), calibrated score, the calibration it was judged against, the blend's b and
whether the camera moved (docs/ablations.md section 57).

    python docs/ablation_runs/objects/lift_trace.py OUT/objects-stream/nut [FRAMES]   # ~30 s for 48 frames
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2

from edge.config import SSDNetConfig
from edge.detector import Detector

folder, frames = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 48
det = Detector(SSDNetConfig())
for i, path in enumerate(sorted(folder.glob("*.png"))[:frames]):
    d = det.process(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    print(f"{i} score {d.score:.3f} lift {getattr(d, 'lift', 0.0):.3f} calibrated {d.calibrated:5.1f} median "
          f"{d.calibration[0]:.3f} scale {d.calibration[1]:.3f} b {det.memory.blend[1]:.2f} moved {d.normal_moved}")
