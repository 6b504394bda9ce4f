"""The parity gate: an engine's map and score against the FP32 PyTorch scorer's, on the same frame.

A TensorRT engine (built or loaded from the cache) must pass it on its first frame or it is
refused (ParityError) and evicted from the cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ParityTolerance:
    """FP16 engine vs FP32 PyTorch. Map differences are in units of the reference map's own std per
    image, whatever the map's units (`score.map_units`).

    Measured (docs/export.md, fitted default config, 256 x 256): an fp16 U-Net (emulated by ONNX
    Runtime on the CPU) moves the map by at most 2e-4 std, bf16 autocast by at most 0.034 std and
    the score by 0.14 %; a wrong weight mapping or a broken layer moves it by whole stds. The
    defaults leave a GPU's fp16 kernels about 3x the bf16 error.
    """

    map_atol: float = 0.1  # max |map_engine - map_torch|, std units
    map_mean_atol: float = 0.01  # mean |map_engine - map_torch|, std units
    score_rtol: float = 0.01  # |score_engine - score_torch| <= score_atol + score_rtol * |score_torch|
    score_atol: float = 0.02


DEFAULT_TOLERANCE = ParityTolerance()


@dataclass(frozen=True)
class ParityReport:
    ok: bool
    map_max_abs: float
    map_mean_abs: float
    score_abs: float
    tolerance: ParityTolerance
    reason: str = ""


def parity_check(ref_map, ref_score, got_map, got_score, tol: ParityTolerance = DEFAULT_TOLERANCE) -> ParityReport:
    """Compare an engine's outputs with the FP32 reference; non-finite values always fail."""
    rm, gm = np.asarray(ref_map, dtype=np.float64), np.asarray(got_map, dtype=np.float64)
    rs, gs = np.asarray(ref_score, dtype=np.float64).reshape(-1), np.asarray(got_score, dtype=np.float64).reshape(-1)
    if rm.shape != gm.shape or rs.shape != gs.shape:
        return ParityReport(False, float("inf"), float("inf"), float("inf"), tol,
                            f"shape mismatch: map {gm.shape} vs {rm.shape}, score {gs.shape} vs {rs.shape}")
    if not (np.isfinite(gm).all() and np.isfinite(gs).all()):
        return ParityReport(False, float("inf"), float("inf"), float("inf"), tol,
                            "non-finite values in the engine output")
    spread = rm.reshape(len(rm), -1).std(axis=1).reshape((-1,) + (1,) * (rm.ndim - 1)) if rm.ndim > 1 else rm.std()
    d = np.abs(gm - rm) / (spread + 1e-12)  # in units of the reference map's std
    dmax, dmean = float(d.max(initial=0.0)), float(d.mean()) if d.size else 0.0
    ds = np.abs(gs - rs)
    reasons = []
    if dmax > tol.map_atol:
        reasons.append(f"max |map diff| {dmax:.4f} > {tol.map_atol}")
    if dmean > tol.map_mean_atol:
        reasons.append(f"mean |map diff| {dmean:.4f} > {tol.map_mean_atol}")
    bad = ds > tol.score_atol + tol.score_rtol * np.abs(rs)
    if bad.any():
        reasons.append(f"|score diff| {float(ds.max()):.4f} > {tol.score_atol} + {tol.score_rtol} * |score|")
    return ParityReport(not reasons, dmax, dmean, float(ds.max(initial=0.0)), tol, "; ".join(reasons))


