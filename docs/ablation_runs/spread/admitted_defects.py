"""Which of a defective frame's cells the memory's rules let in, on the demo-like cameras (brick, grass, gravel
with `configs/demo.yaml`'s seeds, N frames, a defect at probability P; default config): per camera, over its
admitted defective frames, the fraction of defect cells (8 px cells at least half under the mask) and of the
other cells that were candidates for the bank, in the first 16 frames (self-similarity rule) and later (memory
distance rule): docs/ablations.md section 16. Run from the repository root:

    python docs/ablation_runs/spread/admitted_defects.py P N
"""
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.memory import FeatureMemory  # noqa: E402
from edge.synthetic import sample  # noqa: E402

torch.set_num_threads(1)
allowed = {}
add = FeatureMemory.add


def recording_add(self, feats, normal, distance=None):
    allowed["cells"] = normal.cpu().numpy()
    return add(self, feats, normal, distance)


FeatureMemory.add = recording_add
p, n = float(sys.argv[1]), int(sys.argv[2])
det = Detector(SSDNetConfig())
for seed, texture in enumerate(["brick", "grass", "gravel"], 1):
    det.reset()
    rng = np.random.default_rng(seed)
    early, late, defective, admitted = [], [], 0, 0
    for i in range(n):
        image, mask = sample(texture, 256, rng, p)
        allowed.clear()
        added = det.process(image).memory_added
        defective, admitted = defective + mask.any(), admitted + (mask.any() and added > 0)
        if added > 0 and mask.any():
            defect = mask.reshape(32, 8, 32, 8).mean((1, 3)) > 0.5
            if defect.any():
                (early if i < 16 else late).append((allowed["cells"][defect].mean(), allowed["cells"][~defect].mean()))

    def say(rows: list) -> str:
        if not rows:
            return "none"
        a = np.array(rows)
        return f"{len(rows)} admitted defective frames, defect cells allowed {a[:, 0].mean():.2f}, others {a[:, 1].mean():.2f}"
    print(f"{texture}: {admitted} of {defective} defective frames admitted; first 16 frames: {say(early)} | later: "
          f"{say(late)}", flush=True)
