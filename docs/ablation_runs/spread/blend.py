"""The blend of the self-similarity S and the memory map M, offline on `dump_maps.py`'s pickles: M scaled by the
camera's typical S over typical M (means: the product before section 16) or by the ratio of their typical
within-frame spreads (stds; of the full maps, or of what the detector sees on the memory's grid: section 16's
product), times a weight. Per-camera medians over the frames where the memory was ready (warm-up and test).
Pixel AUROC / AUPRC (image AUROC of the top 0.1 %), mean and per category, over the test frames from FIRST on
(the synthetic cameras: 16, where their memory is ready):

    python docs/ablation_runs/spread/blend.py PICKLE [FIRST]
"""
import numpy as np
from maps import GRID as grid
from maps import D, medians, run, spread_parts

full = {c: (medians(c, "s_stat"), medians(c, "m_stat")) for c in D}
for c in D:
    g = grid[c]
    print(f"{c}: grid S mean {g[0]:.3f} std {g[1]:.3f}, memory distance mean {g[2]:.3f} std {g[3]:.3f}: "
          f"mean ratio {g[0] / g[2]:.2f}, spread ratio {g[1] / g[3]:.2f} (full maps: {full[c][0][1] / full[c][1][1]:.2f})")
f32 = lambda a: a.astype(np.float32)  # noqa: E731
run("streamed map", lambda c, r: f32(r["amap"]))
run("S alone", lambda c, r: f32(r["S"]))
run("M alone", lambda c, r: f32(r["M"]))
for w in (1, 2, 3, 6):
    run(f"mean ratio, weight {w}", lambda c, r: f32(r["S"]) + w * full[c][0][0] / full[c][1][0] * f32(r["M"]))
    run(f"spread ratio (maps), weight {w}", lambda c, r: f32(r["S"]) + w * full[c][0][1] / full[c][1][1] * f32(r["M"]))
    run(f"spread ratio (grid), weight {w}", lambda c, r: f32(r["S"]) + w * grid[c][1] / grid[c][3] * f32(r["M"]))


for lam in (0.5, 1, 2):  # not kept: the frame's mean memory map above its typical level lifts every pixel
    run(f"spread w3 + frame term {lam}", lambda c, r: (lambda S, M, mu, _: S + 3 * M + lam * 3 * (M.mean() - mu))(
        *spread_parts(c, r)))
run("spread w3, M clipped below", lambda c, r: (lambda S, M, mu, _: S + 3 * np.maximum(M, mu))(*spread_parts(c, r)))
run("spread w3, S clipped below", lambda c, r: (lambda S, M, mu, _: np.maximum(S, mu) + 3 * M)(*spread_parts(c, r)))
