"""Every 8-bit image and mask of the dev sets reads the same through `edge.overlay.read_rgb` (which takes 16-bit
files at the bits they fill) as through `cv2.imread(IMREAD_COLOR)` (which it replaced): 8-bit results cannot move.

    python docs/ablation_runs/deep_frames/same_8bit.py ../shared/datasets
"""
import sys
from pathlib import Path

import cv2

from edge.images import read_rgb

paths = sorted(Path(sys.argv[1]).glob("**/*.png"))
for path in paths:
    assert (cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1] == read_rgb(path)).all(), path
print(f"{len(paths)} PNG files under {sys.argv[1]}: identical")
