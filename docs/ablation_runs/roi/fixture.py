"""A camera that sees more than the product: a 256 px gravel crop (the product, moving: a new crop each frame) beside
a 64 px fixed fixture (a dark rail with three bright bolt heads), 48 frames, every other one with a drawn defect on
the product, streamed through one Detector (default config). The same frames with the fixture cropped away, as a
region of interest would. Prints false events (normal frames over node.threshold 3.0 after the calibration's first
16), image AUROC and pixel AUROC over the product's pixels, and where normal frames' maps peak.

    python docs/ablation_runs/roi/fixture.py   # ~1 min on 2 CPU cores
"""
from __future__ import annotations

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import draw_defect, texture

FRAMES, THRESHOLD, CALIBRATED_FROM, RAIL = 48, 3.0, 16, 64


def rail() -> np.ndarray:
    r = np.full((256, RAIL, 3), 55, np.uint8)
    r[:, 48:] = 90  # the rail's lit edge
    for y in (40, 128, 216):
        cv2.circle(r, (24, y), 10, (200, 200, 190), -1)
        cv2.line(r, (16, y), (32, y), (60, 60, 60), 2)
    return r


def frames():
    rng, src, fixture = np.random.default_rng(0), texture("gravel", 384, np.random.default_rng(1)), rail()
    for i in range(FRAMES):
        y, x = rng.integers(0, 128, 2)
        product, mask = src[y:y + 256, x:x + 256].copy(), np.zeros((256, 256), bool)
        if i % 2:
            product, mask = draw_defect(product, rng)
        yield np.concatenate([fixture, product], axis=1), mask


def run(crop: bool) -> None:
    det, scores, labels, pix, gts, peaks = Detector(SSDNetConfig(), "cpu"), [], [], [], [], []
    for i, (frame, mask) in enumerate(frames()):
        d = det.process(frame[:, RAIL:] if crop else frame)
        amap = d.anomaly_map[:, -256:]  # the product's pixels
        if i >= CALIBRATED_FROM:
            scores.append(d.calibrated), labels.append(mask.any()), pix.append(amap.ravel()), gts.append(mask.ravel())
            if not mask.any():
                peaks.append(np.unravel_index(np.argmax(d.anomaly_map), d.anomaly_map.shape)[1] < (0 if crop else RAIL))
    scores, labels = np.array(scores), np.array(labels)
    print(f"| {'cropped to the product' if crop else 'with the fixture'} | {int((scores[~labels] > THRESHOLD).sum())} "
          f"of {int((~labels).sum())} | {roc_auc_score(labels, scores):.3f} | "
          f"{roc_auc_score(np.concatenate(gts), np.concatenate(pix)):.3f} | {sum(peaks)} of {len(peaks)} |")


print("| frames | false events | image AUROC | pixel AUROC (product) | normal maps peaking on the fixture |")
print("|---|---|---|---|---|")
run(False)
run(True)
