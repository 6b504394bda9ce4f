"""What blend.py and inverse_variance.py share: `dump_maps.py`'s pickle (argv: PICKLE [FIRST]), each camera's
typical levels, S and M in S's units, and a map function's accuracy over the test frames from FIRST on."""
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tools.eval.metrics import image_auroc, pixel_auprc, pixel_auroc  # noqa: E402

D = pickle.load(open(sys.argv[1], "rb"))
FIRST = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def medians(c: str, key: str = "g_stat") -> np.ndarray:
    """Camera c's medians of a per-frame statistic over the frames where its memory was ready (warm-up and test)."""
    rows = [r for r in D[c]["warm"] + D[c]["test"] if r["ready"] and r[key][-1] > 0]
    return np.median(np.array([r[key] for r in rows]), 0)


GRID = {c: medians(c) for c in D}  # on the memory's grid: S mean, S std, M mean, M std


def spread_parts(c: str, r: dict) -> tuple[np.ndarray, np.ndarray, float, float]:
    """S, M in S's units by the spread ratio on the grid with the offset to S's level, S's typical level, the ratio."""
    g = GRID[c]
    ratio = g[1] / g[3]
    return r["S"].astype(np.float32), ratio * r["M"].astype(np.float32) + g[0] - ratio * g[2], g[0], ratio


def top(m: np.ndarray, q: float = 0.999) -> float:
    """The image score: the mean of the map's top 0.1 %."""
    return float(np.sort(m.ravel())[-max(1, round((1 - q) * m.size)):].mean())


def run(label: str, fn: Callable[[str, dict], np.ndarray], width: int = 30) -> None:
    """Print pixel AUROC / AUPRC (image AUROC) of fn(camera, frame)'s maps, mean and per camera."""
    res = []
    for c, d in D.items():
        rows = [r for r in d["test"][FIRST:] if r["ready"]]
        maps, masks = [fn(c, r) for r in rows], [r["mask"] for r in rows]
        res.append((pixel_auroc(maps, masks), pixel_auprc(maps, masks),
                    image_auroc([top(m) for m in maps], [r["label"] for r in rows])))
    a = np.array(res)
    print(f"{label:{width}s} {a[:, 0].mean():.3f} / {a[:, 1].mean():.3f} ({a[:, 2].mean():.3f}) | "
          + " ".join(f"{c.removeprefix('mtd_')}:{x[0]:.2f}/{x[1]:.2f}/{x[2]:.2f}" for c, x in zip(D, a, strict=True)),
          flush=True)
