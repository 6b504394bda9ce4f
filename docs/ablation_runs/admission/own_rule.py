"""Section 39: would the frame's own self-similarity keep a defective warm-up frame's crack cells out of the memory?
Streams the split's crack warm-up (every tenth frame one of mtd_crack's even-indexed defective images,
`docs/ablation_runs/memory/warm10_split.py SHARED OUT`) through a default Detector and, for every frame the
memory admits, takes the cells the memory's cell rule calls normal (within `admit_cell_ratio` of the typical
distance) and their self-similarity S in units of the frame's robust spread, z = (S - median) / (1.4826 MAD). Prints,
for thresholds T, the share of those cells with z > T: of the crack cells (the mask, one memory cell dilated) of the
defective frames, and of all cells of the normal frames. Usage, from the repository root:
    python docs/ablation_runs/admission/own_rule.py SHARED_DATASETS SPLIT_OUT   (output: own_rule.log)"""
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, '.')
from edge import memory as memmod  # noqa: E402
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402

torch.set_num_threads(1)
det = Detector(SSDNetConfig())
shared, split = Path(sys.argv[1]), Path(sys.argv[2])
gt = shared / 'real-dev/mtd_crack/ground_truth/crack'
bad = sorted((shared / 'real-dev/mtd_crack/test/crack').glob('*.png'))[0::2]
T = (1.0, 1.5, 2.0, 3.0, 4.0)
cur, zs = {}, {'crack': [], 'good': []}
orig_add = memmod.FeatureMemory.add


def add(self, feats, normal, distance=None):
    own = det.backend.memory_maps[0, 0].float().numpy()
    valid = normal.numpy()
    if valid.any():
        med = np.median(own[valid])
        z = (own - med) / (1.4826 * np.median(np.abs(own[valid] - med)) + 1e-12)
        if cur.get('mask') is not None:
            gh, gw = valid.shape
            m, c = cur['mask'], 8
            mp = np.zeros((gh * c, gw * c), np.uint8)
            mp[:m.shape[0], :m.shape[1]] = m
            mc = cv2.dilate((mp.reshape(gh, c, gw, c).max((1, 3)) > 0).astype(np.uint8), np.ones((3, 3), np.uint8))
            zs['crack'].append(z[valid & (mc > 0)])
        else:
            zs['good'].append(z[valid])
    return orig_add(self, feats, normal, distance)


memmod.FeatureMemory.add = add
for i, p in enumerate(sorted((split / 'warmup/mtd_crack').glob('*.png'))):
    cur.clear()
    if i % 10 == 5:
        src = bad[(i // 10) % len(bad)]
        cur['mask'] = cv2.imread(str(gt / f'{src.stem}_mask.png'), 0) > 127
    det.process(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
for kind, parts in zs.items():
    z = np.concatenate(parts) if parts else np.zeros(0)
    print(f"{kind}: {len(parts)} frames, {z.size} cells the distance rule admits; share with z > T: "
          + ", ".join(f"{t:g}: {(z > t).mean():.3f}" for t in T), flush=True)
