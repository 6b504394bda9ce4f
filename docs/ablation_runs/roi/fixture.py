"""A camera that sees more than the product: a 256 px gravel crop (the product, moving: a new crop each frame) beside
something that is there in every frame, 48 frames, every other one with a drawn defect on the product, streamed
through one Detector (default config); then the same frames with the fixture cut away, as `crop` would. Fixtures: a
64 px rail on the left (dark, three bright bolt heads), a 64 px belt along the top (flat dark grey, a little
sensor noise). Prints false events (normal frames over node.threshold 3.0 after the calibration's first 16), image
AUROC and pixel AUROC over the product's pixels, over the frames after the first 16.

    python docs/ablation_runs/roi/fixture.py [rail-left|belt-top ...]   # ~1 min each on 2 CPU cores
"""
from __future__ import annotations

import sys

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import draw_defect, texture

FRAMES, THRESHOLD, CALIBRATED_FROM, SIDE = 48, 3.0, 16, 64


def rail_left(product: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rail = np.full((256, SIDE, 3), 55, np.uint8)
    rail[:, 48:] = 90  # the rail's lit edge
    for y in (40, 128, 216):
        cv2.circle(rail, (24, y), 10, (200, 200, 190), -1)
        cv2.line(rail, (16, y), (32, y), (60, 60, 60), 2)
    return np.concatenate([rail, product], axis=1)


def belt_top(product: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    belt = np.clip(40 + rng.normal(0, 2, (SIDE, 256, 3)), 0, 255).astype(np.uint8)
    return np.concatenate([belt, product], axis=0)


FIXTURES = {"rail-left": rail_left, "belt-top": belt_top}


def frames(fixture):
    rng, src = np.random.default_rng(0), texture("gravel", 384, np.random.default_rng(1))
    for i in range(FRAMES):
        y, x = rng.integers(0, 128, 2)
        product, mask = src[y:y + 256, x:x + 256].copy(), np.zeros((256, 256), bool)
        if i % 2:
            product, mask = draw_defect(product, rng)
        yield fixture(product, rng), product, mask


def run(name: str, crop: bool) -> None:
    det, scores, labels, pix, gts = Detector(SSDNetConfig(), "cpu"), [], [], [], []
    for i, (frame, product, mask) in enumerate(frames(FIXTURES[name])):
        d = det.process(product if crop else frame)
        if i >= CALIBRATED_FROM:
            scores.append(d.calibrated), labels.append(mask.any())
            pix.append(d.anomaly_map[-256:, -256:].ravel()), gts.append(mask.ravel())
    scores, labels = np.array(scores), np.array(labels)
    print(f"| {name}{', cut away' if crop else ''} | {int((scores[~labels] > THRESHOLD).sum())} of "
          f"{int((~labels).sum())} | {roc_auc_score(labels, scores):.3f} | "
          f"{roc_auc_score(np.concatenate(gts), np.concatenate(pix)):.3f} |", flush=True)


print("| frames | false events | image AUROC | pixel AUROC (the product) |")
print("|---|---|---|---|")
for name in sys.argv[1:] or FIXTURES:
    run(name, False)
run(sys.argv[1] if sys.argv[1:] else "rail-left", True)
