"""A dev set as a 12-bit machine-vision camera saves it: every image a 16-bit PNG whose values fill 12 bits
(LSB-aligned, as Mono12 frames are stored), the 8-bit value x 16 plus a seeded uniform 0-15 (the sensor's finer
levels); masks and the rest copied as they are.

    python docs/ablation_runs/deep_frames/make_deep.py ../shared/datasets/textures-dev /tmp/textures-dev-12bit
"""
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
rng = np.random.default_rng(0)
shutil.copytree(src, dst, dirs_exist_ok=True)
images = [p for p in sorted(dst.glob("*/test/*/*.png"))]
for path in images:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image.dtype == np.uint8, path
    deep = image.astype(np.uint16) * 16 + rng.integers(0, 16, image.shape, dtype=np.uint16)
    assert cv2.imwrite(str(path), deep)
print(f"{len(images)} images of {src} written as 12-bit values in 16-bit PNGs under {dst}")
