"""Stream as `ssdnet eval --mode stream` does (default config) and keep, per test frame, the anomaly map, the
self-similarity S and the memory map M (both smoothed, as the scorer blends them), and per every frame (warm-up
too) the means and standard deviations of S and M, and of what the detector sees on the memory's grid (S pooled
onto the cells, the plain memory distance): docs/ablations.md section 16. Run from the repository root:

    python docs/ablation_runs/spread/dump_maps.py real OUT.pkl [WARMUP_FRAMES]   # real-dev after real-stream-dev
    python docs/ablation_runs/spread/dump_maps.py synthetic OUT.pkl P N           # demo-like cameras: brick, grass,
                                                                                  # gravel, N frames, defects at P
"""
import copy
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.images import read_rgb  # noqa: E402
from edge.scoring import AnomalyScorer  # noqa: E402
from edge.synthetic import sample  # noqa: E402
from tools.eval.dataset import list_categories, load_category  # noqa: E402
from tools.eval.evaluate import warmup_paths  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
CELL = 8  # the memory's grid cell at frames up to 512 px
torch.set_num_threads(1)
captured = {}
knn_map, memory_map = AnomalyScorer.knn_map, AnomalyScorer.memory_map
AnomalyScorer.knn_map = lambda self, *a: captured.setdefault("S", knn_map(self, *a))
AnomalyScorer.memory_map = lambda self, *a: captured.setdefault("M", memory_map(self, *a))
det = Detector(SSDNetConfig())


def step(image: np.ndarray, label: int | None = None, mask: np.ndarray | None = None) -> dict:
    captured.clear()
    ready = det.memory.ready
    d = det.process(image)
    h, w = image.shape[:2]
    S, M = (captured[k][0] if k == "M" else captured[k] for k in "SM")
    S, M = (t[0, 0, :h, :w].float().numpy() for t in (S, M))
    own, dist = (t[: -(-h // CELL), : -(-w // CELL)] for t in det.backend.memory_maps[0])
    row = dict(ready=ready, s_stat=(float(S.mean()), float(S.std())), m_stat=(float(M.mean()), float(M.std())),
               g_stat=(float(own.mean()), float(own.std()), float(dist.mean()), float(dist.std())))
    if mask is not None:
        row.update(label=label, mask=mask, amap=d.anomaly_map.astype("float16"), S=S.astype("float16"),
                   M=M.astype("float16"))
    return row


mode, out, res = sys.argv[1], sys.argv[2], {}
if mode == "real":
    root, n = DATA / "real-dev", int(sys.argv[3]) if len(sys.argv) > 3 else 200
    det.reset()
    warm = [step(read_rgb(p)) for p in warmup_paths(DATA / "real-stream-dev", "", n)]
    state = copy.deepcopy(det.state_dict())
    for c in list_categories(root):
        det.reset()
        det.restore(state)
        res[c] = dict(warm=warm, test=[step(s.image, s.label, s.mask) for s in load_category(root, c)])
        print(c, flush=True)
else:
    p, n = float(sys.argv[3]), int(sys.argv[4])
    for seed, texture in enumerate(["brick", "grass", "gravel"], 1):
        det.reset()
        rng = np.random.default_rng(seed)
        frames = [sample(texture, 256, rng, p) for _ in range(n)]
        res[texture] = dict(warm=[], test=[step(img, int(mask.any()), mask) for img, mask in frames])
        print(texture, flush=True)
pickle.dump(res, open(out, "wb"))
