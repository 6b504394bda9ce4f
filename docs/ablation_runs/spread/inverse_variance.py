"""How much the memory map M counts against the self-similarity S, offline on `dump_maps.py`'s pickles: M put into
S's units with the ratio r of their typical within-frame spreads on the memory's grid (section 16), then weighted
w x r**p: p 0 is section 16's product (each map in units of its own spread), p 1 weighs the raw distances by their
inverse variances (section 17's product), p 2 leans further. Also tried and not kept: sharpening M with S's local
detail (M's excess over its typical level times S / its Gaussian blur, or S's detail added to M). Pixel AUROC /
AUPRC (image AUROC of the top 0.1 %), mean and per category, over the test frames from FIRST on:

    python docs/ablation_runs/spread/inverse_variance.py PICKLE [FIRST]
"""
import pickle
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tools.eval.metrics import image_auroc, pixel_auprc, pixel_auroc  # noqa: E402

D = pickle.load(open(sys.argv[1], "rb"))
FIRST = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def medians(c: str) -> np.ndarray:
    rows = [r for r in D[c]["warm"] + D[c]["test"] if r["ready"] and r["g_stat"][-1] > 0]
    return np.median(np.array([r["g_stat"] for r in rows]), 0)  # S mean, S std, M mean, M std


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
    print(f"{label:34s} {a[:, 0].mean():.3f} / {a[:, 1].mean():.3f} ({a[:, 2].mean():.3f}) | "
          + " ".join(f"{c.removeprefix('mtd_')}:{x[0]:.2f}/{x[1]:.2f}/{x[2]:.2f}" for c, x in zip(D, a, strict=True)), flush=True)


grid = {c: medians(c) for c in D}


def parts(c: str, r: dict) -> tuple[np.ndarray, np.ndarray, float, float]:
    """S, M in S's units (spread ratio, at S's typical level), S's typical level, the spread ratio r."""
    g = grid[c]
    ratio = g[1] / g[3]
    return r["S"].astype(np.float32), ratio * r["M"].astype(np.float32) + g[0] - ratio * g[2], g[0], ratio


for p in (0, 1, 2):
    for w in (1, 2, 3, 4, 6):
        run(f"p{p} w{w}", lambda c, r, p=p, w=w: (lambda S, M, mu, ratio: S + w * ratio**p * M)(*parts(c, r)))
for sigma in (4, 8, 16):  # not kept
    def sharpened(c: str, r: dict, sigma: float = sigma) -> np.ndarray:
        S, M, mu, _ = parts(c, r)
        return S + 3 * (mu + (M - mu) * np.clip(S / np.maximum(gaussian_filter(S, sigma), 1e-6), 0.5, 2.0))
    run(f"p0 w3, M's excess x S/blur(S) s{sigma}", sharpened)
    run(f"p0 w3, M + S - blur(S) s{sigma}", lambda c, r, sigma=sigma: (lambda S, M, mu, _: S + 3 * (
        M + S - gaussian_filter(S, sigma)))(*parts(c, r)))
