"""Section 21, offline: which VGG19 layers the memory's features should use. A bank of 20k cells drawn at random
from real-dev's 200 warm-up frames, each test cell's mean distance to its 3 nearest (memory distance alone, no
self-similarity, no admission rules), smoothed as the scorer does (sigma 4); pixel AUROC per category / image
AUROC (mean of the top 0.1 %). Features: `edge.memory.memory_features` (3x3-averaged, 8 px cells; relu5_1, coarser
than the cells, interpolated onto them). Usage from the repository root: python docs/ablation_runs/deep_memory/layers.py
(output: layers.log; the first run interpolated relu5_1 onto relu4_1's grid before the 3x3 average instead)."""
import sys, numpy as np, torch, torch.nn.functional as F, cv2
sys.path.insert(0, '.')
from pathlib import Path
from sklearn.metrics import roc_auc_score
from edge.config import MemoryConfig
from edge.vgg import VGG19Features
from edge.memory import memory_features
from edge.fitter import image_to_tensor
torch.set_num_threads(1)
ALL = ('relu3_1', 'relu4_1', 'relu5_1')
vgg = VGG19Features(layers=ALL).eval()
root = Path('../shared/datasets/real-dev'); warm = Path('../shared/datasets/real-stream-dev')
@torch.no_grad()
def acts(path):
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    x = image_to_tensor(img, torch.device('cpu'), 16)
    return vgg(x, ALL), tuple(x.shape[-2:]), img.shape[:2]
W = [acts(p) for p in sorted(warm.glob('*.png'))]
T = {}
for c in sorted(d.name for d in root.iterdir() if d.is_dir()):
    rows = []
    for sub in sorted((root / c / 'test').iterdir()):
        for p in sorted(sub.glob('*.png')):
            m = cv2.imread(str(root / c / 'ground_truth' / sub.name / (p.stem + '_mask.png')), 0) if sub.name != 'good' else None
            rows.append((*acts(p), sub.name != 'good', m))
    T[c] = rows
rng = np.random.default_rng(0)
for layers in [('relu3_1', 'relu4_1'), ('relu4_1',), ('relu4_1', 'relu5_1'), ('relu3_1', 'relu4_1', 'relu5_1'), ('relu5_1',)]:
    cfg = MemoryConfig(layers=list(layers))
    f = lambda a, size: memory_features(a, size, cfg)[0]
    allr = torch.cat([f(a, s).flatten(1).T for a, s, _ in W])
    B = allr[rng.choice(len(allr), 20000, replace=False)]
    P, I, out = [], [], []
    for c, rs in T.items():
        ys, ss, lab, sc = [], [], [], []
        for a, size, (h, w), bad, m in rs:
            g = f(a, size)
            d = torch.cdist(g.flatten(1).T, B).topk(3, largest=False).values.mean(1).reshape(1, 1, *g.shape[-2:])
            d = F.interpolate(d, size=size, mode='bilinear', align_corners=False)[0, 0, :h, :w].numpy()
            d = cv2.GaussianBlur(d, (0, 0), 4)
            ys.append((m > 127).ravel() if m is not None else np.zeros(h * w, bool)); ss.append(d.ravel())
            lab.append(bad); sc.append(np.sort(d.ravel())[-max(1, int(0.001 * d.size)):].mean())
        p = roc_auc_score(np.concatenate(ys), np.concatenate(ss)); i = roc_auc_score(lab, sc)
        P.append(p); I.append(i); out.append(f'{c[4:]}:{p:.3f}/{i:.2f}')
    print(f'{"+".join(layers):28s} AUROC {np.mean(P):.3f} img {np.mean(I):.3f} | ' + ' '.join(out), flush=True)
