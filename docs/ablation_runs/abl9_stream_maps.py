"""Section 5: the scorer's component maps, streamed as `ssdnet eval --mode stream` streams them
(default config: each category one camera, cold first frame, later frames scored before their 3
warm steps), saved per image so weights and normalisations can be compared offline:
  python docs/ablation_runs/abl9_stream_maps.py 0 /tmp/abl9 & python docs/ablation_runs/abl9_stream_maps.py 1 /tmp/abl9; wait
  python docs/ablation_runs/abl9_stream_maps.py combine /tmp/abl9   (writes abl9.json)
Saved: raw (unnormalised) L2, perceptual and self-similarity maps, and the mask."""
import json
import os
import sys
from collections import defaultdict

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from edge.config import SSDNetConfig
from tools.eval.dataset import list_categories, load_category
from edge.detector import Detector

ROOT = "../shared/datasets/textures-dev"


def stream(half: int, out: str) -> None:
    torch.set_num_threads(1)
    det = Detector(SSDNetConfig(), "cpu")
    sc = det.scorer
    saved = {}

    def score(x, h, w):  # replaces Detector.score: the default map, and its parts kept aside
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            (l2, perc), = sc.raw_maps(x)
            knn = sc.knn_map(x)
        saved.update(l2=l2, perc=perc, knn=knn)
        amap = 0.25 * sc._normalise(l2) + 0.25 * sc._normalise(perc) + sc._normalise(knn)
        return amap[0, 0, :h, :w].float().numpy(), 0.0

    det.score = score
    for cat in list_categories(ROOT)[half::2]:
        det.reset()
        for s in load_category(ROOT, cat):
            det.process(s.image)
            np.savez(os.path.join(out, f"{cat}__{s.defect_type}__{s.path.stem}.npz"), mask=s.mask,
                     **{k: v[0, 0].float().numpy().astype(np.float16) for k, v in saved.items()})
        print(cat, flush=True)


def z(m: np.ndarray) -> np.ndarray:
    return (m - m.mean()) / (m.std() + 1e-8)


VARIANTS = {  # name -> (weights of z(L2), z(perceptual)); the self-similarity map has weight 1
    "knn only": (0.0, 0.0), "0.05 L2 + 0.05 P": (0.05, 0.05), "0.1 L2 + 0.1 P": (0.1, 0.1),
    "0.25 L2 + 0.25 P (then default)": (0.25, 0.25), "0.25 P": (0.0, 0.25), "0.25 L2": (0.25, 0.0),
}


def combine(folder: str) -> None:
    items = defaultdict(list)
    for name in sorted(os.listdir(folder)):
        d = dict(np.load(os.path.join(folder, name)))
        items[name.split("__")[0]].append({k: v.astype(np.float32) for k, v in d.items()})
    res = {}
    for units in ("std", "knn"):
        for name, (wl, wp) in VARIANTS.items():
            a, p = [], []
            for its in items.values():
                maps = []
                for d in its:
                    m = z(d["knn"]) + wl * z(d["l2"]) + wp * z(d["perc"])
                    maps.append(m if units == "std" else d["knn"].mean() + d["knn"].std() * m)
                y = np.concatenate([d["mask"].ravel() for d in its]) > 0
                s = np.concatenate([m.ravel() for m in maps])
                a.append(roc_auc_score(y, s))
                p.append(average_precision_score(y, s))
            res[f"{name}, {units} units"] = {"pixel_auroc": float(np.mean(a)), "pixel_auprc": float(np.mean(p))}
            print(f"{name + ', ' + units + ' units':45s} {np.mean(a):.3f} / {np.mean(p):.3f}")
    json.dump(res, open("docs/ablation_runs/abl9.json", "w"), indent=1)


if __name__ == "__main__":
    if sys.argv[1] == "combine":
        combine(sys.argv[2])
    else:
        stream(int(sys.argv[1]), sys.argv[2])
