"""docs/ablations.md section 76: `edge.frames.change` between frames of one size on the dev sets (every pair within a
category: other products of one line), and for one frame filmed again (sensor noise) or moved a fraction of a pixel.
Run from the repository root: python docs/ablation_runs/still/change_pairs.py [../shared/datasets]"""
import itertools
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, "tests")
from edge.frames import change, grey  # noqa: E402
from edge.images import read_image  # noqa: E402
from test_border import brick_crops  # noqa: E402

root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets")
lines = {"real-stream-dev": sorted((root / "real-stream-dev").glob("*.png"))}
for ds in ("real-dev", "textures-dev"):
    for cat in sorted(p for p in (root / ds).iterdir() if p.is_dir()):
        lines[f"{ds}/{cat.name}"] = sorted(cat.glob("test/*/*.png"))
every = []
for name, paths in lines.items():
    thumbs = [(p, grey(cv2.cvtColor(read_image(p), cv2.COLOR_BGR2RGB))) for p in paths]
    pairs = [(change(a, b), pa.name, pb.name) for (pa, a), (pb, b) in itertools.combinations(thumbs, 2)]
    pairs = [p for p in pairs if np.isfinite(p[0])]
    every += [p[0] for p in pairs]
    if pairs:
        low = min(pairs)
        print(f"{name:28s} {len(pairs):5d} pairs of one size: min {low[0]:.3f} ({low[1]}, {low[2]}), median "
              f"{np.median([p[0] for p in pairs]):.3f}")
print(f"all {len(every)} pairs: min {min(every):.3f}, 0.1st percentile {np.percentile(every, 0.1):.3f}, "
      f"median {np.median(every):.3f}")
rng = np.random.default_rng(0)
scenes = {"brick 320x240": brick_crops(1)[0]}
scenes |= {f"real-stream-dev/{p.name}": cv2.cvtColor(read_image(p), cv2.COLOR_BGR2RGB)
           for p in lines["real-stream-dev"][:3]}
for name, img in scenes.items():
    ref, cells = grey(img), []
    for sigma in (1, 2, 4, 8):
        again = np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)
        cells.append(f"noise {sigma}: {change(grey(again), ref):.2f}")
    for shift in (0.25, 0.5, 1, 2):
        moved = cv2.warpAffine(img, np.float32([[1, 0, shift], [0, 1, 0]]), img.shape[1::-1],
                               borderMode=cv2.BORDER_REFLECT)
        cells.append(f"moved {shift} px: {change(grey(moved), ref):.2f}")
    print(f"{name:28s} " + ", ".join(cells))
