"""Where a normal frame's map runs hot: the typical median and 99th percentile of the published anomaly map in
bands of distance to the frame's border (edge.border's BANDS), over each camera's good test frames, on
`docs/ablation_runs/spread/dump_maps.py`'s pickles (maps of the default before docs/ablations.md section 19);
then pixel AUROC / AUPRC (image AUROC of the top 0.1 %) of those maps as they are, with the border bands put
on the interior's footing by a profile of those good frames (optimistic: the product learns it from the
frames it admits, the streamed runs of section 19 measure that), and with an 8 px border left out of the
image score. Run from the repository root:

    python docs/ablation_runs/border/bands.py PICKLE [FIRST]
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spread"))
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from edge.border import BANDS, BorderProfile, band_stats  # noqa: E402
from edge.config import BorderConfig  # noqa: E402
from maps import D, run  # noqa: E402

PROFILES = {}
for c, d in D.items():
    good = [r["amap"].astype(np.float32) for r in d["test"] if r["ready"] and r["label"] == 0]
    PROFILES[c] = BorderProfile(BorderConfig(min_frames=1))
    for m in good:
        PROFILES[c].observe(m)
    typical = np.nanmedian(np.stack([band_stats(m) for m in good]), axis=0)
    print(f"{c.removeprefix('mtd_'):8s} median / 99th percentile by px from the border: " + " ".join(
        f"{lo}+ {med:.3f}/{top:.3f}" for lo, (med, top) in zip(BANDS, typical, strict=True)))


def without_border(c: str, r: dict, px: int = 8) -> np.ndarray:
    m = r["amap"].astype(np.float32).copy()
    inner = np.zeros_like(m, dtype=bool)
    inner[px:-px, px:-px] = True
    m[~inner] = np.median(m)  # out of the top 0.1 % (and of the pixel ranking's top)
    return m


run("as published", lambda c, r: r["amap"].astype(np.float32))
run("border bands corrected", lambda c, r: PROFILES[c].apply(r["amap"].astype(np.float32)))
run("8 px border left out", without_border)
