"""docs/ablations.md section 78, step 1: stream normal lines and the dev sets through the default detector and write,
per stream, what its calibrator saw (each frame's raw image score and the memory's weight in it), each frame's
calibrated score, whether the camera moved on it, and (dev sets) its label, for `replay.py`.

Normal lines: scikit-image's brick, grass and gravel, random crops of 112 and 256 px, 3 seeds, 200 frames each (18
streams); real-stream-dev's 200 tiles in their order and in 3 shuffled orders (4 streams). Dev sets, streamed as
`ssdnet eval --mode stream` runs them: textures-dev, real-dev without warm-up and after 50 real-stream-dev frames.
Run from the repository root (~25 min on 2 cores):
    python docs/ablation_runs/young_camera/record.py ../shared/datasets OUT_DIR"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.images import image_files, read_rgb
from edge.synthetic import sample
from tools.eval.dataset import list_categories, load_category

torch.set_num_threads(1)
root, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
tiles = image_files(root / "real-stream-dev")


def stream(frames, labels, tag: str, file) -> None:
    """One camera over `frames` (labels: -1 warm-up, 0 normal, 1 defective)."""
    det, seen = Detector(SSDNetConfig()), []
    observe = det.calibrator.observe
    det.calibrator.observe = lambda raw, weight=0.0: seen.append([raw, weight]) or observe(raw, weight)
    frames_out = []
    for image, label in zip(frames, labels, strict=True):
        d = det.process(image)
        frames_out.append({"z": d.calibrated, "moved": d.normal_moved, "quiet": d.still, "label": label})
    file.write(json.dumps({"tag": tag, "observed": seen, "frames": frames_out}) + "\n")
    file.flush()


with open(out / "normal.jsonl", "w") as f:
    for texture in ("brick", "grass", "gravel"):
        for size in (112, 256):
            for seed in range(3):
                rng = np.random.default_rng(seed)
                stream((sample(texture, size, rng, 0.0)[0] for _ in range(200)), [0] * 200, f"{texture} {size} {seed}", f)
    for order in range(4):
        paths = tiles if order == 0 else list(np.random.default_rng(order).permutation(tiles))
        stream((read_rgb(p) for p in paths), [0] * len(paths), f"real-stream-dev order {order}", f)
for name, dataset, warm in (("textures-dev", "textures-dev", 0), ("real-dev-w0", "real-dev", 0),
                            ("real-dev-w50", "real-dev", 50)):
    with open(out / f"{name}.jsonl", "w") as f:
        for category in list_categories(root / dataset):
            samples = load_category(root / dataset, category)
            frames = [read_rgb(p) for p in tiles[:warm]] + [s.image for s in samples]
            stream(frames, [-1] * warm + [s.label for s in samples], category, f)
