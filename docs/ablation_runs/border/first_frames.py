"""A camera's first frames on a moving textured product: events on normal frames and on drawn scratches
(docs/ablations.md section 66). Four streams of 40 frames, 320 x 240 crops of scikit-image's brick, grass and gravel
at random places (the `audit` stream is a line engineer's audit's: brick, seed 0, dark scratches), a 4 px scratch
144 px long on frames 12, 20, 25, 33, 38; each through a fresh Detector as the node runs it, events at 3.

    python docs/ablation_runs/border/first_frames.py [OVERRIDES_JSON]   # ~1 min
"""
from __future__ import annotations

import json
import sys

import cv2
import numpy as np
from skimage import data

from edge.config import SSDNetConfig, parse_config
from edge.detector import Detector

DEFECTIVE, THRESHOLD, W, H = (12, 20, 25, 33, 38), 3.0, 320, 240


def stream(texture: str, seed: int, bright_on_dark: bool) -> list[np.ndarray]:
    image, rng, frames = getattr(data, texture)(), np.random.default_rng(seed), []
    for i in range(40):
        x, y = rng.integers(0, image.shape[1] - W), rng.integers(0, image.shape[0] - H)
        frame = cv2.cvtColor(image[y:y + H, x:x + W].copy(), cv2.COLOR_GRAY2RGB)
        if i in DEFECTIVE:
            p1 = (int(rng.integers(30, 150)), int(rng.integers(30, 100)))
            grey = 230 if bright_on_dark and frame.mean() <= 90 else 20
            cv2.line(frame, p1, (p1[0] + 120, p1[1] + 80), (grey, grey, grey), 4)
        frames.append(frame)
    return frames


cfg = parse_config(SSDNetConfig, json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})
for name, texture, seed in (("audit", "brick", 0), ("brick", "brick", 1), ("grass", "grass", 1),
                            ("gravel", "gravel", 1)):
    det = Detector(cfg)
    calibrated = [det.process(f).calibrated for f in stream(texture, seed, name != "audit")]
    hits = [i for i in DEFECTIVE if calibrated[i] >= THRESHOLD]
    false = [(i, round(c, 2)) for i, c in enumerate(calibrated) if i not in DEFECTIVE and c >= THRESHOLD]
    print(f"{name:7s} scratches {len(hits)}/5 {hits}  normal frames {len(false)}/35 {false}  "
          f"scratches' scores {[round(calibrated[i], 2) for i in DEFECTIVE]}")
