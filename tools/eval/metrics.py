"""Anomaly-localization metrics, pooled over all pixels of all images (MVTec-AD conventions).

Every metric returns ``float('nan')`` where it is undefined (no anomalous pixels, or only one class)
instead of raising. Maps and masks are lists or stacks of HxW arrays; masks may be boolean or 0/255.
All pixels are used (no subsampling): 168 images of 256x256 is about 11M pixels.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

ArrayList = Sequence[np.ndarray] | np.ndarray


def _flatten(maps: ArrayList, masks: ArrayList) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate maps (float64) and masks (bool) pixel by pixel, checking shapes agree."""
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks")
    if len(maps) == 0:
        return np.zeros(0), np.zeros(0, dtype=bool)
    for i, (m, g) in enumerate(zip(maps, masks, strict=True)):
        if np.shape(m) != np.shape(g):
            raise ValueError(f"image {i}: map shape {np.shape(m)} != mask shape {np.shape(g)}")
    scores = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    truth = np.concatenate([(np.asarray(g) > 0).ravel() for g in masks])
    return scores, truth


def _both_classes(truth: np.ndarray) -> bool:
    return bool(truth.any() and not truth.all())


def pixel_auroc(maps: ArrayList, masks: ArrayList) -> float:
    """Area under the pixel-level ROC curve."""
    scores, truth = _flatten(maps, masks)
    return float(roc_auc_score(truth, scores)) if _both_classes(truth) else float("nan")


def pixel_auprc(maps: ArrayList, masks: ArrayList) -> float:
    """Pixel-level average precision (area under the precision-recall curve)."""
    scores, truth = _flatten(maps, masks)
    return float(average_precision_score(truth, scores)) if truth.any() else float("nan")


def pixel_f1_max(maps: ArrayList, masks: ArrayList) -> float:
    """Best pixel-level F1 over all thresholds."""
    scores, truth = _flatten(maps, masks)
    if not truth.any():
        return float("nan")
    precision, recall, _ = precision_recall_curve(truth, scores)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    return float(f1.max())


def image_auroc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Image-level ROC AUC of anomaly scores against labels (1 = anomalous)."""
    labels = np.asarray(labels) > 0
    if not _both_classes(labels):
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, dtype=np.float64)))


def pro_curve(maps: ArrayList, masks: ArrayList) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-region-overlap curve: (FPR, PRO) at every distinct score, from (0, 0) upwards.

    Returns ([0], [0]) where undefined (no anomalous or no normal pixels).
    Regions are the 8-connected components of each mask (as in the MVTec-AD evaluation code).
    PRO at a threshold is the mean over all regions of the fraction of the region scoring >= it, so
    each anomalous pixel carries weight 1 / (n_regions * its region's size) and the curve is a
    cumulative sum over pixels sorted by descending score.
    """
    scores, truth = _flatten(maps, masks)
    structure = np.ones((3, 3), dtype=int)
    weights, n_regions = [], 0
    for g in masks:
        labels, n = ndimage.label(np.asarray(g) > 0, structure=structure)
        inv_size = np.zeros(n + 1)
        inv_size[1:] = 1.0 / np.bincount(labels.ravel(), minlength=n + 1)[1:]
        weights.append(inv_size[labels.ravel()])
        n_regions += n
    n_normal = int((~truth).sum())
    if n_regions == 0 or n_normal == 0:
        return np.array([0.0]), np.array([0.0])
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    fp = np.cumsum(~truth[order]) / n_normal
    pro = np.cumsum(np.concatenate(weights)[order]) / n_regions
    # keep the last index of each run of tied scores: a threshold admits all tied pixels at once
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    return np.r_[0.0, fp[last]], np.r_[0.0, pro[last]]


def aupro(maps: ArrayList, masks: ArrayList, max_fpr: float = 0.3) -> float:
    """Area under the PRO curve for FPR in [0, max_fpr], divided by max_fpr (1.0 = perfect)."""
    if not 0 < max_fpr <= 1:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    fpr, pro = pro_curve(maps, masks)
    if fpr.size < 2:  # no anomalous or no normal pixels
        return float("nan")
    keep = fpr <= max_fpr
    x, y = fpr[keep], pro[keep]
    if x[-1] < max_fpr:  # close the curve at max_fpr by linear interpolation
        y_end = np.interp(max_fpr, fpr, pro)
        x, y = np.r_[x, max_fpr], np.r_[y, y_end]
    return float(auc(x, y) / max_fpr)


def summarize(maps: ArrayList, masks: ArrayList, scores: Sequence[float] | np.ndarray,
              labels: Sequence[int] | np.ndarray) -> dict[str, float]:
    """All metrics at once: pixel_auroc, pixel_auprc, aupro, pixel_f1_max, image_auroc."""
    return {
        "pixel_auroc": pixel_auroc(maps, masks),
        "pixel_auprc": pixel_auprc(maps, masks),
        "aupro": aupro(maps, masks),
        "pixel_f1_max": pixel_f1_max(maps, masks),
        "image_auroc": image_auroc(scores, labels),
    }
