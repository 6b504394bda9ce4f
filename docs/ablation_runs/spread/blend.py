"""The blend of the self-similarity S and the memory map M, offline on `dump_maps.py`'s pickles: M scaled by the
camera's typical S over typical M (means: the product before section 16) or by the ratio of their typical
within-frame spreads (stds; of the full maps, or of what the detector sees on the memory's grid: section 16's
product), times a weight. Per-camera medians over the frames where the memory was ready (warm-up and test).
Pixel AUROC / AUPRC (image AUROC of the top 0.1 %), mean and per category, over the test frames from FIRST on
(the synthetic cameras: 16, where their memory is ready):

    python docs/ablation_runs/spread/blend.py PICKLE [FIRST]
"""
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tools.eval.metrics import image_auroc, pixel_auprc, pixel_auroc  # noqa: E402

D = pickle.load(open(sys.argv[1], "rb"))
FIRST = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def medians(c: str, key: str) -> np.ndarray:
    rows = [r for r in D[c]["warm"] + D[c]["test"] if r["ready"] and r[key][-1] > 0]
    return np.median(np.array([r[key] for r in rows]), 0)


def top(m: np.ndarray, q: float = 0.999) -> float:
    return float(np.sort(m.ravel())[-max(1, round((1 - q) * m.size)):].mean())


def run(label: str, fn) -> None:
    res = []
    for c, d in D.items():
        rows = [r for r in d["test"][FIRST:] if r["ready"]]
        maps, masks = [fn(c, r) for r in rows], [r["mask"] for r in rows]
        res.append((pixel_auroc(maps, masks), pixel_auprc(maps, masks),
                    image_auroc([top(m) for m in maps], [r["label"] for r in rows])))
    a = np.array(res)
    print(f"{label:30s} {a[:, 0].mean():.3f} / {a[:, 1].mean():.3f} ({a[:, 2].mean():.3f}) | "
          + " ".join(f"{c.removeprefix('mtd_')}:{x[0]:.2f}/{x[1]:.2f}/{x[2]:.2f}" for c, x in zip(D, a)), flush=True)


full = {c: (medians(c, "s_stat"), medians(c, "m_stat")) for c in D}
grid = {c: medians(c, "g_stat") for c in D}
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


def spread_parts(c: str, r: dict) -> tuple[np.ndarray, np.ndarray, float]:
    """S, M in S's units by the spread ratio on the grid with the offset to S's level, S's typical level."""
    g = grid[c]
    scale = g[1] / g[3]
    return f32(r["S"]), scale * f32(r["M"]) + g[0] - scale * g[2], g[0]


for lam in (0.5, 1, 2):  # not kept: the frame's mean memory map above its typical level lifts every pixel
    run(f"spread w3 + frame term {lam}", lambda c, r: (lambda S, M, mu: S + 3 * M + lam * 3 * (M.mean() - mu))(
        *spread_parts(c, r)))
run("spread w3, M clipped below", lambda c, r: (lambda S, M, mu: S + 3 * np.maximum(M, mu))(*spread_parts(c, r)))
run("spread w3, S clipped below", lambda c, r: (lambda S, M, mu: np.maximum(S, mu) + 3 * M)(*spread_parts(c, r)))
