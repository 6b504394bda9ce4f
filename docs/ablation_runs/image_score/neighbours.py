"""Section 22, offline: an image score relative to the camera's most alike earlier normal frames (RsCIN-like
re-scoring, streamed: only the past). Each frame's global descriptor is the mean of its memory features
(edge.memory.memory_features, default layers) over its cells; a test frame's score (dump.py) less the median
score of its k nearest warm-up frames (history.py's scores, frames scored with the memory), against the
camera-wide median (the shipped calibration: a shift, which changes no AUROC). Usage (repository root):
python docs/ablation_runs/image_score/neighbours.py WARMUP_DIR HISTORY.json A.pt [B.pt ...]
(output: neighbours.log)"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

sys.path.insert(0, '.')
sys.path.insert(0, str(Path(__file__).parent))
import maps_io  # noqa: E402

from edge.config import MemoryConfig  # noqa: E402
from edge.fitter import image_to_tensor  # noqa: E402
from edge.memory import memory_features  # noqa: E402
from edge.images import read_rgb  # noqa: E402
from edge.vgg import VGG19Features  # noqa: E402

torch.set_num_threads(1)
cfg = MemoryConfig()
vgg = VGG19Features(layers=tuple(cfg.layers)).eval()


@torch.no_grad()
def descriptor(path) -> np.ndarray:
    img = read_rgb(path)
    x = image_to_tensor(img, torch.device('cpu'), 64)
    g = memory_features(vgg(x, tuple(cfg.layers)), tuple(x.shape[-2:]), cfg)[0]
    cell = x.shape[-1] // g.shape[-1]
    g = g[:, : -(-img.shape[0] // cell), : -(-img.shape[1] // cell)]
    return torch.nn.functional.normalize(g.flatten(1).mean(1), dim=0).numpy()


history = json.load(open(sys.argv[2]))
paths = sorted(p for p in Path(sys.argv[1]).iterdir() if p.suffix == '.png')[:len(history)]
keep = [i for i, h in enumerate(history) if h['memory']]
H = np.stack([descriptor(paths[i]) for i in keep])
hs = np.array([history[i]['score'] for i in keep])
data = maps_io.load(sys.argv[3:])
print(f'{len(keep)} warm-up frames')
print('score'.ljust(24), ' '.join(c.replace('mtd_', '')[:8].rjust(8) for c in data), '    mean')
rows = {c: [(r['label'], r['score'], descriptor(r['path'])) for r in rs] for c, rs in data.items()}
for k in (0, 5, 10, 20, 50):
    aucs = []
    for rs in rows.values():
        adj = []
        for _, s, g in rs:
            if k == 0:
                adj.append(s)
                continue
            near = np.argsort(-(H @ g))[:k]
            adj.append(s - np.median(hs[near]))
        aucs.append(roc_auc_score([lab for lab, _, _ in rs], adj))
    name = 'shipped' if k == 0 else f'less median of {k} nearest'
    print(name.ljust(24), ' '.join(f'{a:8.3f}' for a in aucs), f'{np.mean(aucs):8.3f}', flush=True)
