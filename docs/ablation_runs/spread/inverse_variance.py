"""How much the memory map M counts against the self-similarity S, offline on `dump_maps.py`'s pickles: M put into
S's units with the ratio r of their typical within-frame spreads on the memory's grid (section 16), then weighted
w x r**p: p 0 is section 16's product (each map in units of its own spread), p 1 weighs the raw distances by their
inverse variances (section 17's product), p 2 leans further. Also tried and not kept: sharpening M with S's local
detail (M's excess over its typical level times S / its Gaussian blur, or S's detail added to M). Pixel AUROC /
AUPRC (image AUROC of the top 0.1 %), mean and per category, over the test frames from FIRST on:

    python docs/ablation_runs/spread/inverse_variance.py PICKLE [FIRST]
"""
import numpy as np
from maps import run, spread_parts
from scipy.ndimage import gaussian_filter

for p in (0, 1, 2):
    for w in (1, 2, 3, 4, 6):
        run(f"p{p} w{w}", lambda c, r, p=p, w=w: (lambda S, M, mu, ratio: S + w * ratio**p * M)(
            *spread_parts(c, r)), 34)
for sigma in (4, 8, 16):  # not kept
    def sharpened(c: str, r: dict, sigma: float = sigma) -> np.ndarray:
        S, M, mu, _ = spread_parts(c, r)
        return S + 3 * (mu + (M - mu) * np.clip(S / np.maximum(gaussian_filter(S, sigma), 1e-6), 0.5, 2.0))
    run(f"p0 w3, M's excess x S/blur(S) s{sigma}", sharpened, 34)
    run(f"p0 w3, M + S - blur(S) s{sigma}", lambda c, r, sigma=sigma: (lambda S, M, mu, _: S + 3 * (
        M + S - gaussian_filter(S, sigma)))(*spread_parts(c, r)), 34)
