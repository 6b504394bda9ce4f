"""Section 23, offline: does the memory gain from remembering more frames, and does a random projection of its rows
keep its distances? Default memory features (`edge.memory.memory_features`, unprojected here: `dims` null) of
real-stream-dev's 200 frames and real-dev's test images; banks of 128 random cells per frame; memory distance alone
(3-NN mean), smoothed sigma 4; pixel AUROC per category / image AUROC (mean of the top 0.1 %).
Usage (repository root): python docs/ablation_runs/bank_size/bank_size.py sizes|dims|cells (bank_size.log,
proj_dims.log, cells.log)."""
import sys, numpy as np, torch, torch.nn.functional as F, cv2, time
sys.path.insert(0, '.')
from pathlib import Path
from sklearn.metrics import roc_auc_score
from edge.config import MemoryConfig
from edge.vgg import VGG19Features
from edge.memory import memory_features
from edge.fitter import image_to_tensor
torch.set_num_threads(2)
cfg = MemoryConfig(dims=None)
L = tuple(cfg.layers)
vgg = VGG19Features(layers=L).eval()
root = Path('../shared/datasets/real-dev'); warm = Path('../shared/datasets/real-stream-dev')
@torch.no_grad()
def feats(path):
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    x = image_to_tensor(img, torch.device('cpu'), 16)
    g = memory_features(vgg(x, L), tuple(x.shape[-2:]), cfg)[0]
    return g, tuple(x.shape[-2:]), img.shape[:2]
t = time.time()
W = [feats(p)[0].flatten(1).T for p in sorted(warm.glob('*.png'))]
T = {}
for c in sorted(d.name for d in root.iterdir() if d.is_dir()):
    rows = []
    for sub in sorted((root / c / 'test').iterdir()):
        for p in sorted(sub.glob('*.png')):
            m = cv2.imread(str(root / c / 'ground_truth' / sub.name / (p.stem + '_mask.png')), 0) if sub.name != 'good' else None
            rows.append((*feats(p), sub.name != 'good', m))
    T[c] = rows
print(f'features {time.time() - t:.0f} s', flush=True)
rng = np.random.default_rng(0)
D = W[0].shape[1]
pr = lambda k: torch.randn(D, k, generator=torch.Generator().manual_seed(0)) / k ** 0.5
def draw(frames, per):
    return torch.cat([f[torch.as_tensor(rng.choice(len(f), min(per, len(f)), replace=False))] for f in frames])
if sys.argv[1] == 'sizes':
    variants = {
        'last 51 frames x 128 (16 MB ring)': (draw(W[-51:], 128), None),
        'all 200 x 33 (16 MB, spread)': (draw(W, 33), None),
        'all 200 x 128 (64 MB)': (draw(W, 128), None),
        'proj 320, all 200 x 128 (16 MB)': (draw(W, 128), pr(320)),
        'proj 320, last 51 x 128 (4 MB)': (draw(W[-51:], 128), pr(320)),
    }
elif sys.argv[1] == 'dims':
    full = draw(W, 128)
    variants = {f'proj {k}, all 200 x 128': (full, pr(k)) for k in (128, 192, 256, 512)}
else:  # cells per frame
    variants = {f'proj {k}, all 200 x {n}': (draw(W, n), pr(k)) for k, n in ((320, 64), (160, 128), (160, 256))}
for name, (B, P) in variants.items():
    if P is not None:
        B = B @ P
    P_, I_, out = [], [], []
    for c, rs in T.items():
        ys, ss, lab, sc = [], [], [], []
        for g, size, (h, w), bad, m in rs:
            q = g.flatten(1).T
            if P is not None:
                q = q @ P
            d = torch.cdist(q, B).topk(3, largest=False).values.mean(1).reshape(1, 1, *g.shape[-2:])
            d = F.interpolate(d, size=size, mode='bilinear', align_corners=False)[0, 0, :h, :w].numpy()
            d = cv2.GaussianBlur(d, (0, 0), 4)
            ys.append((m > 127).ravel() if m is not None else np.zeros(h * w, bool)); ss.append(d.ravel())
            lab.append(bad); sc.append(np.sort(d.ravel())[-max(1, int(0.001 * d.size)):].mean())
        p = roc_auc_score(np.concatenate(ys), np.concatenate(ss)); i = roc_auc_score(lab, sc)
        P_.append(p); I_.append(i); out.append(f'{c[4:]}:{p:.3f}/{i:.2f}')
    print(f'{name:36s} rows {len(B):6d} AUROC {np.mean(P_):.3f} img {np.mean(I_):.3f} | ' + ' '.join(out), flush=True)
