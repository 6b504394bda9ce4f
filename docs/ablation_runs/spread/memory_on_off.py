"""Demo-like synthetic cameras (brick, grass, gravel with `configs/demo.yaml`'s seeds), N frames each with a defect
at probability P, through the default detector with the memory at SIZE_MB (0 = off) and `memory.scale_by` SCALE_BY
(default variance; `spread` is the product before docs/ablations.md section 17, `level` before section 16): pixel AUROC / AUPRC (image AUROC of
the raw image score) over each camera's first 16 frames (before its memory is ready) and the rest, the same frames either way, per
camera and pooled as the demo's summary pools them. Run from the repository root:

    python docs/ablation_runs/spread/memory_on_off.py SIZE_MB P N [SCALE_BY]
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.synthetic import sample  # noqa: E402
from tools.eval.metrics import image_auroc, pixel_auprc, pixel_auroc  # noqa: E402

torch.set_num_threads(1)
size_mb, p, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
scale_by = sys.argv[4] if len(sys.argv) > 4 else "variance"
det = Detector(SSDNetConfig.model_validate({"memory": {"size_mb": size_mb, "scale_by": scale_by}}))
out = {}
for seed, texture in enumerate(["brick", "grass", "gravel"], 1):
    det.reset()
    rng = np.random.default_rng(seed)
    frames = [sample(texture, 256, rng, p) for _ in range(n)]
    out[texture] = [(d.anomaly_map, mask, d.score) for d, mask in ((det.process(img), mask) for img, mask in frames)]


def accuracy(rows: list) -> str:
    maps, masks = [r[0] for r in rows], [r[1] for r in rows]
    labels, scores = [int(r[1].any()) for r in rows], [r[2] for r in rows]
    return f"{pixel_auroc(maps, masks):.3f} / {pixel_auprc(maps, masks):.3f} ({image_auroc(scores, labels):.3f})"


for name, rows in [*out.items(), ("pooled", None)]:
    for lo, hi in ((0, 16), (16, n)):
        part = rows[lo:hi] if rows is not None else [r for rs in out.values() for r in rs[lo:hi]]
        print(f"memory {size_mb} MB, scale_by {scale_by}, p {p}: {name:6s} frames {lo}-{hi}: {accuracy(part)}", flush=True)
