"""The CUDA path (fp16 autocast + GradScaler fit, scoring, memory on the GPU) against its CPU twin.

Skipped with a reason where no CUDA GPU is present; the CPU side of each comparison runs in every test
run elsewhere (tests/test_memory.py, tests/test_core.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from edge.config import SSDNetConfig, parse_config
from edge.detector import Detector
from edge.fitter import image_to_tensor
from edge.synthetic import texture

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none present)")]

SMALL = {"model": {"base_channels": 8}, "fit": {"steps": 20, "warm_steps": 3},
         "memory": {"min_frames": 4}, "calibration": {"min_frames": 4}}
FIT = {**SMALL, "score": {"pixel_weight": 0.1, "perceptual_weight": 0.1}}  # the reconstruction maps on: a fit


def _frames(n: int, size: int = 96) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [texture("gravel", size, rng) for _ in range(n)]


def test_fit_free_scoring_on_cuda_matches_the_cpu():
    cfg = parse_config(SSDNetConfig, {**SMALL, "score": {"pixel_weight": 0, "perceptual_weight": 0}})
    cpu, gpu = Detector(cfg, "cpu"), Detector(cfg, "cuda")
    for frame in _frames(6):
        a, b = cpu.process(frame), gpu.process(frame)
        corr = np.corrcoef(a.anomaly_map.ravel(), b.anomaly_map.ravel())[0, 1]
        assert corr > 0.99, corr
        assert abs(a.score - b.score) <= 0.05 * max(1.0, abs(a.score))
        assert a.memory_added == b.memory_added


def test_mixed_precision_fit_on_cuda_lowers_the_loss_and_stays_finite():
    cfg = parse_config(SSDNetConfig, {**FIT, "fit": {"steps": 60, "warm_steps": 3, "amp": True}})
    det = Detector(cfg, "cuda")
    frame = _frames(1, 128)[0]
    x = image_to_tensor(frame, det.device, det.fitter.multiple)
    first = det.fit(x)
    later = [det.fit(x) for _ in range(5)]
    assert det.fitter.scaler.is_enabled()  # fp16 autocast + GradScaler is the CUDA form
    assert np.isfinite(first.loss) and all(np.isfinite(s.loss) for s in later)
    assert later[-1].loss < first.loss


def test_a_drawn_defect_is_found_on_cuda_as_on_the_cpu():
    cfg = parse_config(SSDNetConfig, FIT)
    frame = _frames(1, 128)[0].copy()
    mask = np.zeros(frame.shape[:2], bool)
    mask[50:70, 40:80] = True
    frame[mask] = (255, 255, 255)
    aucs = {dev: roc_auc_score(mask.ravel(), Detector(cfg, dev).process(frame).anomaly_map.ravel())
            for dev in ("cpu", "cuda")}
    assert aucs["cuda"] > 0.9 and abs(aucs["cuda"] - aucs["cpu"]) < 0.03, aucs
