"""A product changeover on one camera: 40 normal frames of one texture, then 120 of another with a drawn defect in
every third frame, streamed through one Detector (default config, node.threshold 3.0). Per 30 frames after the
changeover: defects flagged, normal frames flagged, image AUROC of the calibrated score; the frame (after the
changeover) at which the camera's normal moved (edge.calibration).

    python docs/ablation_runs/changeover/changeover.py VARIANT FIRST SECOND [OUT.json]   # ~1.5 min on 2 CPU cores

VARIANT: `default` (the code as it is: a move starts the camera afresh), `calibration` (the calibration starts
afresh, the detector keeps its memory, border profile and weights), `before` (section 46's calibration: held-out
frames above the normal only, which join the window once they are most of the last 50) or `fresh` (the camera
reset at the changeover by hand: no frames of FIRST).
"""
from __future__ import annotations

import json
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

import edge.calibration as calibration
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.synthetic import draw_defect, texture

BEFORE, AFTER, WINDOW, THRESHOLD = 40, 120, 30, 3.0


def observe_before(self: calibration.ScoreCalibrator, raw: float) -> bool:
    """Section 46's rule: a frame calibrated at hold_out_z or more is held out; held frames join the statistics
    once they are most of the last window // 4 (160 frames never fill its window of 200 held scores)."""
    z = self.cfg.hold_out_z
    held = z is not None and not self.calibrating and self.calibrate(raw) >= z
    self.recent.append(int(held))
    self.__dict__.setdefault("held", [])
    (self.held if held else self.scores).append(float(raw))
    if 2 * sum(self.recent) > self.recent.maxlen:
        self.scores.extend(self.held)
        self.held = []
    return False


def calibration_only(observe):
    def observe_and_keep_the_detector(self: calibration.ScoreCalibrator, raw: float) -> bool:
        self.moved = observe(self, raw)  # the calibration starts afresh on a move
        return False  # and the detector is not reset
    return observe_and_keep_the_detector


def crops(name: str, n: int, rng: np.random.Generator):
    src = texture(name, 320, np.random.default_rng(1))
    for _ in range(n):
        y, x = rng.integers(0, 64, 2)
        yield src[y:y + 256, x:x + 256].copy()


def main(variant: str, first: str, second: str, out: str | None) -> None:
    if variant == "before":
        calibration.ScoreCalibrator.observe = observe_before
    elif variant == "calibration":
        calibration.ScoreCalibrator.observe = calibration_only(calibration.ScoreCalibrator.observe)
    elif variant not in ("default", "fresh"):
        raise SystemExit(f"unknown variant {variant!r}")
    rng = np.random.default_rng(0)
    old = list(crops(first, BEFORE, rng))
    new, labels = [], []
    for i, frame in enumerate(crops(second, AFTER, rng)):
        if i % 3 == 2:
            frame, _ = draw_defect(frame, rng)
        new.append(frame)
        labels.append(i % 3 == 2)
    det = Detector(SSDNetConfig(), "cpu")
    for frame in old if variant != "fresh" else []:
        det.process(frame)
    scores, moved = [], []
    for i, frame in enumerate(new):
        d = det.process(frame)
        scores.append(d.calibrated)
        if d.normal_moved or det.calibrator.__dict__.pop("moved", False):
            moved.append(i)
    cal, lab = np.array(scores), np.array(labels)
    windows = []
    for s in range(0, AFTER, WINDOW):
        c, m = cal[s:s + WINDOW], lab[s:s + WINDOW]
        windows.append({"frames": f"{s}-{s + WINDOW - 1}", "defects_flagged": int((c[m] > THRESHOLD).sum()),
                        "defects": int(m.sum()), "normal_flagged": int((c[~m] > THRESHOLD).sum()),
                        "normal": int((~m).sum()), "image_auroc": round(float(roc_auc_score(m, c)), 3)})
    cells = "; ".join(f"{w['defects_flagged']}/{w['defects']}, {w['normal_flagged']}/{w['normal']}, "
                      f"{w['image_auroc']:.3f}" for w in windows)
    print(f"| {first} -> {second} | {variant} | {moved} | {cells} |")
    if out:
        with open(out, "w") as f:
            json.dump({"first": first, "second": second, "variant": variant, "moved": moved, "windows": windows,
                       "calibrated": cal.round(3).tolist()}, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4], sys.argv[4] if len(sys.argv) > 4 else None)
