"""Section 66's brick stream (seed 1) frame by frame: raw score, calibration, the memory's weight, and where the map's
top lies on the frames around the false event at frame 37.

    python docs/ablation_runs/border/trace_frame.py   # ~10 s
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np

from edge.config import SSDNetConfig
from edge.detector import Detector

sys.argv = sys.argv[:1]
first = runpy.run_path(str(Path(__file__).with_name("first_frames.py")), run_name="first_frames")  # prints its table
stream, defective = first["stream"], first["DEFECTIVE"]
det = Detector(SSDNetConfig())
for i, frame in enumerate(stream("brick", 1, True)):
    d = det.process(frame)
    y, x = np.unravel_index(np.argmax(d.anomaly_map), d.anomaly_map.shape)
    edge = min(y, x, d.anomaly_map.shape[0] - 1 - y, d.anomaly_map.shape[1] - 1 - x)
    print(f"{i:2d} {'D' if i in defective else ' '} raw {d.score:.3f} calibrated {d.calibrated:6.2f} median "
          f"{d.calibration[0]:.3f} scale {d.calibration[1]:.3f} memory weight {det.memory.blend[1]:.3f} inset "
          f"{d.score_inset} top at ({y}, {x}), {edge} px from the border")
