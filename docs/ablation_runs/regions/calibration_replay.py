"""Replays the raw image scores `event_regions.py` recorded (each category's warm-up frames, then its test frames)
through the per-camera calibration, as recorded (the recording's `CONFIG`) or with overrides on it, and prints events
at thresholds: recall on defective frames and the share of good frames flagged (docs/ablations.md section 59); for a
normal stream recorded by normal_raws.py, its false events over all its frames and over those from its 100th on. With
no override it reproduces the recorded calibrated scores (checked). An override's replay leaves out what its verdicts
would change in the detector (which frames the memory admits; a normal that moves starting the camera afresh):
stream what it suggests.

    python docs/ablation_runs/regions/calibration_replay.py RESULT.json ['{"window": 50}' '{"memory_share": 0.5}' ...]
"""
from __future__ import annotations

import json
import sys

import numpy as np

from edge.calibration import ScoreCalibrator
from edge.config import CalibrationConfig

THRESHOLDS = (2.0, 2.5, 3.0)


def replay(result: dict, cfg: CalibrationConfig) -> tuple[np.ndarray, np.ndarray]:
    """Labels and calibrated scores of the test frames, each category's camera calibrated from its warm-up on."""
    labels, calibrated = [], []
    for category, warm in result["warmup"].items():
        cal = ScoreCalibrator(cfg)
        for raw, weight in warm:
            cal.observe(raw, weight)
        for frame in (f for f in result["frames"] if f[0] == category):
            labels.append(frame[1])
            calibrated.append(cal.calibrate(frame[3], frame[6]))
            cal.observe(frame[3], frame[6])
    return np.array(labels), np.array(calibrated)


def replay_normal(result: dict, cfg: CalibrationConfig) -> np.ndarray:
    cal, calibrated = ScoreCalibrator(cfg), []
    for raw, weight in zip(result["raw"], result["weights"], strict=True):
        calibrated.append(cal.calibrate(raw, weight))
        cal.observe(raw, weight)
    return np.array(calibrated)


result = json.load(open(sys.argv[1]))
normal = "raw" in result
if "weights" not in result and not all(len(f) > 6 for f in result.get("frames", [[]])):
    sys.exit(f"{sys.argv[1]} was recorded without the memory's weight in each score: record it again (section 59's "
             "real_w50_sec58.json, normal_cup_sec58.json and every *_sec59.json have it)")
recorded = np.array(result["calibrated"] if normal else [f[2] for f in result["frames"]])
for override in [None, *sys.argv[2:]]:
    recorded_with = json.loads(result.get("config", "{}")).get("calibration", {})
    cfg = CalibrationConfig.model_validate({**recorded_with, **json.loads(override or "{}")})
    if normal:
        calibrated = replay_normal(result, cfg)
        if override is None and not result["moved_at"]:
            assert np.allclose(calibrated, recorded, rtol=1e-3, atol=2e-3), "the replay does not reproduce the recorded scores"
        print(f"{override or 'as recorded':>40}: " + "  ".join(
            f"> {t}: {(calibrated > t).sum()} ({(calibrated[100:] > t).sum()} from frame 100)" for t in THRESHOLDS))
        continue
    labels, calibrated = replay(result, cfg)
    if override is None:
        assert np.allclose(calibrated, recorded, rtol=1e-3, atol=2e-3), "the replay does not reproduce the recorded scores"
    good, bad = calibrated[labels == 0], calibrated[labels == 1]
    print(f"{override or 'as recorded':>40}: " + "  ".join(
        f"> {t}: {(bad > t).sum()}/{bad.size} defective, {(good > t).sum()}/{good.size} good" for t in THRESHOLDS))
