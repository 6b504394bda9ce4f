"""The `local_stats` baseline (robust z-scores of the local statistics) on a dev set, without and with the spread
floor (edge.local_stats.SPREAD_FLOOR) in the same run: pixel AUROC / AUPRC per category and their mean.

    python docs/ablation_runs/colour_floor/baseline.py ../shared/datasets/textures-dev   # ~1 min
"""
from __future__ import annotations

import sys

import numpy as np

import edge.local_stats as local_stats
from tools.eval.baselines import local_stats as baseline
from tools.eval.dataset import list_categories, load_category
from tools.eval.metrics import pixel_auprc, pixel_auroc


def main(root: str) -> None:
    samples = {c: load_category(root, c) for c in list_categories(root)}
    for floor in (0.0, local_stats.SPREAD_FLOOR):
        local_stats.SPREAD_FLOOR = floor
        rows = {}
        for c, items in samples.items():
            maps, masks = [baseline(s.image) for s in items], [s.mask for s in items]
            rows[c] = (pixel_auroc(maps, masks), pixel_auprc(maps, masks))
        print(f"floor {floor * 255:.1f} grey levels: mean {np.mean([r[0] for r in rows.values()]):.4f} / "
              f"{np.mean([r[1] for r in rows.values()]):.4f}; " + ", ".join(f"{c} {a:.3f}/{p:.3f}" for c, (a, p)
                                                                          in rows.items()))


if __name__ == "__main__":
    main(sys.argv[1])
