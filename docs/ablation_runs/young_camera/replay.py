"""docs/ablations.md section 78, step 2: replay the calibrator on what `record.py` wrote, as the default and with
three changes to it, and print per change and threshold: the share of normal-line frames that are events (from each
camera's 10th frame on, and by the camera's age) and the dev sets' defective frames that are events.

Changes: the scale widened for the few scores a young camera's statistics read (Student's t against the normal at
3 robust std, degrees of freedom n - 1 or 0.37 n - 1, the MAD's efficiency); the scale as the std of the scores clipped
at 3 robust std; the hold-out at 4 robust std and off. A replay does not feed the calibrated score back into what the
camera learns (the memory's admission), so it shows the events alone.
Run from the repository root: python docs/ablation_runs/young_camera/replay.py OUT_DIR"""
import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from edge.calibration import MAD_TO_STD, ScoreCalibrator
from edge.config import CalibrationConfig

runs = Path(sys.argv[1])
THRESHOLDS = (2.5, 3.0, 3.5, 4.0)
AGES = ((10, 16), (16, 50), (50, 100), (100, 200))


class Variant(ScoreCalibrator):
    """The calibrator with its scale replaced: widened by `efficiency` (t) or the clipped std (`clip`)."""

    efficiency: float | None = None
    clip: float | None = None

    def stats(self, weight: float = 0.0) -> tuple[float, float]:
        med, scale = super().stats(weight)
        if self.calibrating or (self.efficiency is None and self.clip is None):
            return med, scale
        s = self.read(weight)
        if self.clip is not None:
            m = np.median(s)
            bound = self.clip * MAD_TO_STD * np.median(np.abs(s - m))
            return med, max(float(np.clip(s, m - bound, m + bound).std(ddof=1)), self.cfg.min_scale_fraction * abs(med))
        dof = max(1.0, self.efficiency * len(s) - 1)
        return med, scale * stats.t.ppf(stats.norm.cdf(3.0), dof) / 3.0 * math.sqrt(1 + 1 / len(s))


def replay(file: Path, make) -> list[tuple[int, float, int]]:
    """(frame index, calibrated score, label) of every frame the calibrator saw, replayed."""
    out = []
    for line in file.read_text().splitlines():
        run = json.loads(line)
        frames = [f for f in run["frames"] if not f["quiet"]]  # a still frame is not observed
        cal = make()
        for i, ((raw, weight), frame) in enumerate(zip(run["observed"], frames, strict=True)):
            out.append((i, cal.calibrate(raw, weight), frame["label"]))
            cal.observe(raw, weight)
            if frame["moved"]:
                cal.reset()
    return out


def variant(efficiency=None, clip=None, hold_out_z=3.0):
    def make():
        cal = Variant(CalibrationConfig(hold_out_z=hold_out_z))
        cal.efficiency, cal.clip = efficiency, clip
        return cal
    return make


VARIANTS = {"default": variant(), "widened, dof n - 1": variant(efficiency=1.0),
            "widened, dof 0.37 n - 1": variant(efficiency=0.37), "clipped std": variant(clip=3.0),
            "hold-out at 4": variant(hold_out_z=4.0), "no hold-out": variant(hold_out_z=None)}
print("| calibration | " + " | ".join(f"threshold {t}: normal-line events / dev defects flagged" for t in THRESHOLDS)
      + " | normal-line events at 3 by the camera's age (frames " + ", ".join(f"{a}-{b}" for a, b in AGES) + ") |")
print("|---" * (len(THRESHOLDS) + 2) + "|")
for name, make in VARIANTS.items():
    normal = np.array([(i, z) for i, z, _ in replay(runs / "normal.jsonl", make) if i >= 10])
    dev = [(z, label) for f in ("textures-dev", "real-dev-w0", "real-dev-w50")
           for _, z, label in replay(runs / f"{f}.jsonl", make) if label == 1]
    defects = np.array([z for z, _ in dev])
    cells = [f"{100 * (normal[:, 1] >= t).mean():.2f} % / {(defects >= t).sum()} of {len(defects)}" for t in THRESHOLDS]
    ages = [normal[(normal[:, 0] >= a) & (normal[:, 0] < b), 1] for a, b in AGES]
    print(f"| {name} | " + " | ".join(cells) + " | " + ", ".join(f"{100 * (z >= 3).mean():.1f} %" for z in ages) + " |")
