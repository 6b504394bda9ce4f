"""Raw frame-alone scores of normal crops by their size: does the calibration's prior (measured on 110-256 px frames)
hold for small frames scored alone (`ssdnet score`, a camera's first frames)?

    python docs/ablation_runs/calibration_prior/small_frames.py ../shared/datasets/textures-dev \
        ../shared/datasets/real-stream-dev > small_frames.log

Every 2nd good frame of the first set and every 10th frame of the second, two corner crops of each size, each scored
by a fresh default Detector (one thread); per size the median raw score, its robust spread and the share over the
prior's threshold 3 (raw > prior_median + 3 prior_scale)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.images import read_rgb

SIDES = (32, 40, 48, 64, 96, 128, 192)


def main(textures: str, stream: str) -> None:
    torch.set_num_threads(1)
    cfg = SSDNetConfig()
    det, over = Detector(cfg), cfg.calibration.prior_median + 3 * cfg.calibration.prior_scale
    frames = sorted(Path(textures).glob("*/test/good/*.png"))[::2] + sorted(Path(stream).rglob("*.png"))[::10]
    images = [read_rgb(p) for p in frames]
    print("side  crops  median  robust_spread  over_threshold_3")
    for side in SIDES:
        raws = []
        for img in images:
            h, w = img.shape[:2]
            if min(h, w) < side:
                continue
            for y, x in ((0, 0), (h - side, w - side)):
                det.reset()
                raws.append(float(det.process(img[y:y + side, x:x + side].copy()).score))
        r = np.array(raws)
        med = np.median(r)
        print(f"{side:4d}  {len(r):5d}  {med:6.3f}  {1.4826 * np.median(np.abs(r - med)):13.3f}  "
              f"{(r > over).mean():16.2f}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
