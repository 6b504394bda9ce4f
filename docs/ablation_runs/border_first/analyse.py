"""Section 81: how much a map's border costs, and a frame-alone border correction, on maps saved by stream_maps.py.

    python docs/ablation_runs/border_first/analyse.py MAPS_FOLDER...

Per folder: the pooled pixel AUROC per category as `ssdnet eval` computes it (mean over categories, and per defect type
over its frames with the category's good ones) for the maps as they are, scored without their outer 8 / 16 px (a
diagnostic, not a map), and with each distance band's median moved onto the interior's, both from the frame's own map
(edge.border's bands; all of it, only downward, half of it; on every frame or a camera's first 16, before its profile
is ready); then where the defects lie (their pixels within 8 px of the border against the frame's).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from edge.border import band_index, band_stats


def load(folder: str) -> dict[str, tuple[list, list, list]]:
    out = {}
    for f in sorted(Path(folder).glob("*.npz")):
        z = np.load(f, allow_pickle=True)
        out[f.stem] = ([np.asarray(m, np.float32) for m in z["maps"]], [np.asarray(m, bool) for m in z["masks"]],
                       list(z["kinds"]))
    return out


def pooled(maps, masks, inset: int = 0) -> float:
    cut = (lambda a: a[inset:a.shape[0] - inset, inset:a.shape[1] - inset]) if inset else (lambda a: a)
    return roc_auc_score(np.concatenate([cut(m).ravel() for m in masks]), np.concatenate([cut(m).ravel() for m in maps]))


def level(amap: np.ndarray, share: float = 1.0, down_only: bool = False) -> np.ndarray:
    median = band_stats(amap)[:, 0]
    if not np.isfinite(median).all():
        return amap
    shift = share * (median[-1] - median)
    return amap + (np.minimum(shift, 0) if down_only else shift)[band_index(*amap.shape)]


def report(data, name: str, change=lambda m: m, first: int | None = None, inset: int = 0) -> None:
    means, types = [], {}
    for maps, masks, kinds in data.values():
        maps = [change(m) if first is None or i < first else m for i, m in enumerate(maps)]
        means.append(pooled(maps, masks, inset))
        for t in sorted(set(kinds) - {"good"}):
            sel = [i for i, k in enumerate(kinds) if k in (t, "good")]
            types.setdefault(t, []).append(pooled([maps[i] for i in sel], [masks[i] for i in sel], inset))
    print(f"  {name:44s} {np.mean(means):.3f}  " + " ".join(f"{t} {np.mean(v):.3f}" for t, v in types.items()))


for folder in sys.argv[1:]:
    data = load(folder)
    print(folder)
    report(data, "as streamed")
    report(data, "scored without the outer 8 px", inset=8)
    report(data, "scored without the outer 16 px", inset=16)
    report(data, "bands' medians onto the interior's", level)
    report(data, "the same, a camera's first 16 frames", level, first=16)
    report(data, "the same, only downward", lambda m: level(m, down_only=True), first=16)
    report(data, "half of it", lambda m: level(m, 0.5), first=16)
    near = {}
    for maps, masks, kinds in data.values():
        for m, k in zip(masks, kinds):
            if k != "good":
                b = band_index(*m.shape) <= 4  # within 8 px of the border (edge.border.BANDS)
                a = near.setdefault(k, np.zeros(4))
                a += (m & b).sum(), m.sum(), b.sum(), m.size
    print("  defect pixels within 8 px of the border (the frame's pixels there): "
          + ", ".join(f"{k} {a[0] / a[1]:.3f} ({a[2] / a[3]:.3f})" for k, a in near.items()))
