"""Offline: the memory distance per layer group (relu3_1 | relu4_1 + relu5_1) against the bank real-dev's 200
warm-up frames leave in the streamed default (dump.py's cached state), blended with the frame's own
self-similarity S (dump.py's w200 files) as the product blends: a S + b M with b / a = weight x the typical
within-frame variance ratio of S and M (here: medians over the category's test frames), floor 0.5.
Pixel AUROC / AUPRC and image AUROC (top 0.1 %) per category; no border correction, and the bank stays as the
warm-up left it. Usage (repository root): python docs/ablation_runs/image_score/groups.py WARM.pt A.pt B.pt
(output: groups.log)"""
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score

sys.path.insert(0, '.')
sys.path.insert(0, str(Path(__file__).parent))
import maps_io  # noqa: E402

from edge.config import MemoryConfig  # noqa: E402
from edge.fitter import image_to_tensor  # noqa: E402
from edge.memory import memory_features  # noqa: E402
from edge.vgg import VGG19Features  # noqa: E402

torch.set_num_threads(2)
LAYERS = ('relu3_1', 'relu4_1', 'relu5_1')
cfg = MemoryConfig()
vgg = VGG19Features(layers=LAYERS).eval()
bank = torch.load(sys.argv[1], weights_only=True)['memory']['bank'].float()
data = maps_io.load(sys.argv[2:])
SLICES = {'all': slice(0, 1280), 'r3': slice(0, 256), 'r45': slice(256, 1280), 'r4': slice(256, 768),
          'r5': slice(768, 1280)}


def knn(q, b, k=3):
    return torch.cdist(q, b).topk(k, largest=False).values.mean(1)


@torch.no_grad()
def distances(path, h, w):
    img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    x = image_to_tensor(img, torch.device('cpu'), 64)
    size = tuple(x.shape[-2:])
    g = memory_features(vgg(x, LAYERS), size, cfg)[0]
    q = g.flatten(1).T
    out = {}
    for name, s in SLICES.items():
        d = knn(q[:, s], bank[:, s]).reshape(1, 1, *g.shape[-2:])
        d = F.interpolate(d, size=size, mode='bilinear', align_corners=False)[0, 0, :h, :w].numpy()
        out[name] = cv2.GaussianBlur(d, (0, 0), 4)
    return out


def top(v, q=0.999):
    v = v.ravel()
    k = max(1, round((1 - q) * v.size))
    return np.partition(v, v.size - k)[-k:].mean()


maps = {c: [dict(S=r['S'].astype(np.float64), mask=r['mask'], label=r['label'], **distances(r['path'], *r['size']))
            for r in rs] for c, rs in data.items()}


def blend(rs, names, weight=3.0, floor=0.5, combine='sum'):
    """Each M of `names` standardised by the category's typical within-frame mean/std, blended with S."""
    good = [r for r in rs if not r['label']]
    sm, ss = np.median([r['S'].mean() for r in good]), np.median([r['S'].std() for r in good])
    out = []
    for r in rs:
        zs = []
        for n in names:
            mm, ms = np.median([g[n].mean() for g in good]), np.median([g[n].std() for g in good])
            zs.append((r[n] - mm) / ms)
        z = np.max(zs, 0) if combine == 'max' else np.mean(zs, 0)
        zs_s = (r['S'] - sm) / ss
        b = (zs_s + weight * z) / np.sqrt(1 + weight ** 2)  # inverse-variance: S's spread kept
        m = sm + ss * b
        out.append(np.maximum(m, floor * r['S'] + (1 - floor) * sm))
    return out


variants = [('all', ['all'], 'sum'), ('r3|r45 mean', ['r3', 'r45'], 'sum'), ('r3|r45 max', ['r3', 'r45'], 'max'),
            ('r3|r4|r5 max', ['r3', 'r4', 'r5'], 'max'), ('r45', ['r45'], 'sum'), ('r3', ['r3'], 'sum')]
print('variant'.ljust(16), ' '.join(c[4:12].rjust(17) for c in maps), '  mean')
for name, names, comb in variants:
    P, A, Im, cells = [], [], [], []
    for rs in maps.values():
        m = blend(rs, names, combine=comb)
        y = np.concatenate([(r['mask'] > 0).ravel() for r in rs])
        v = np.concatenate([x.ravel() for x in m])
        P.append(roc_auc_score(y, v))
        A.append(average_precision_score(y, v))
        Im.append(roc_auc_score([r['label'] for r in rs], [top(x) for x in m]))
        cells.append(f'{P[-1]:.3f}/{A[-1]:.3f}/{Im[-1]:.2f}')
    print(name.ljust(16), ' '.join(x.rjust(17) for x in cells), f'{np.mean(P):.3f}/{np.mean(A):.3f}/{np.mean(Im):.3f}',
          flush=True)
