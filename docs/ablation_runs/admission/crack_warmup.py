"""Sections 39 and 40: the cells a Detector's memory admits while the split's crack warm-up streams through it
(`docs/ablation_runs/memory/warm10_split.py SHARED OUT`: every tenth frame one of mtd_crack's even-indexed defective
images), with the distance rule alone (`admit_own_mad: null`, section 38's). For every frame the memory admits, of the
cells the distance rule calls normal: `columns(z, ratio)` of their self-similarity z in the frame's robust stds,
(S - median) / (1.4826 MAD), and their memory distance over the camera's typical one, both (gh, gw), giving
(gh, gw, K). Returns the rows of the crack's cells (the mask, one memory cell dilated) of the defective frames, and
of all cells of the normal frames."""
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from edge import memory as memmod
from edge.config import SSDNetConfig
from edge.detector import Detector

CELL = 8


def crack_cells(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(gh, gw) bool: the memory cells a crack mask touches, dilated by one cell."""
    (gh, gw), c = grid, CELL
    mp = np.zeros((gh * c, gw * c), np.uint8)
    mp[:mask.shape[0], :mask.shape[1]] = mask
    touched = (mp.reshape(gh, c, gw, c).max((1, 3)) > 0).astype(np.uint8)
    return cv2.dilate(touched, np.ones((3, 3), np.uint8)) > 0


def admitted_cells(shared: Path, split: Path,
                   columns: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    torch.set_num_threads(1)
    det = Detector(SSDNetConfig.model_validate({'memory': {'admit_own_mad': None}}))
    gt = shared / 'real-dev/mtd_crack/ground_truth/crack'
    bad = sorted((shared / 'real-dev/mtd_crack/test/crack').glob('*.png'))[0::2]
    cur, rows = {}, {'crack': [], 'good': []}
    orig_add = memmod.FeatureMemory.add

    def add(self, feats, normal, distance=None):
        own = det.backend.memory_maps[0, 0].float().numpy()
        valid = normal.numpy()
        if valid.any():
            med = np.median(own[valid])
            z = (own - med) / (1.4826 * np.median(np.abs(own[valid] - med)) + 1e-12)
            f = columns(z, distance.float().numpy() / max(det.memory.typical[1], 1e-12))
            if cur.get('mask') is not None:
                rows['crack'].append(f[valid & crack_cells(cur['mask'], valid.shape)])
            else:
                rows['good'].append(f[valid])
        return orig_add(self, feats, normal, distance)

    memmod.FeatureMemory.add = add
    try:
        for i, p in enumerate(sorted((split / 'warmup/mtd_crack').glob('*.png'))):
            cur.clear()
            if i % 10 == 5:
                src = bad[(i // 10) % len(bad)]
                cur['mask'] = cv2.imread(str(gt / f'{src.stem}_mask.png'), 0) > 127
            det.process(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB))
    finally:
        memmod.FeatureMemory.add = orig_add
    return {k: np.concatenate(v) for k, v in rows.items()}
