"""The self-similarity on per-frame whitened cell features (docs/ablations.md section 31): each frame's cell features
(VGG19 + local statistics, as the default) centred and multiplied by (C + LAM tr(C) / d I)^-1/2, C their covariance
over the frame, then scaled to a mean norm of 1; `none` is the default. Spec MODE:LAM:W (W: the spacing term).
Usage (repository root): python docs/ablation_runs/line_stats/cache.py ../shared/datasets/textures-dev tex.pkl
<all 14 categories>, then python docs/ablation_runs/ss_features/whiten.py tex.pkl none:0:0.75 pca:0.1:0.75
pca:1:0.75 (output: whiten.log)."""
import sys, pickle, torch, torch.nn.functional as F
sys.path[:0] = ['.', 'docs/ablation_runs/cross_frame']
from common import report
from edge.filters import gaussian_blur, gaussian_kernel
from edge.knn import knn_distance_and_spacing
from edge.local_stats import stats_features
torch.set_num_threads(1)
R = pickle.load(open(sys.argv[1], 'rb'))
K4 = gaussian_kernel(4.0)
cats = {}
for k, e in R.items():
    cats.setdefault(e['cat'], []).append(k)


def transform(f, mode, lam):
    c, gh, gw = f.shape
    X = f.reshape(c, -1).T.double()
    mu = X.mean(0, keepdim=True)
    Xc = X - mu
    if mode == 'none':
        return f
    C = Xc.T @ Xc / X.shape[0]
    C = C + lam * C.trace() / c * torch.eye(c, dtype=C.dtype)
    ev, V = torch.linalg.eigh(C)
    Y = Xc @ V / ev.clamp_min(1e-12).sqrt()
    Y = Y / (Y.norm(dim=1).mean())  # a frame's mean norm 1, so distances are comparable in scale
    return Y.T.float().reshape(c, gh, gw)


for spec in sys.argv[2:]:
    mode, lam, sw = spec.split(':'); lam = float(lam); sw = float(sw)
    maps = {}
    for key, e in R.items():
        x = e['x'][None].float()
        f = torch.cat([e['g'].float(), 0.2 * stats_features(x, 4, 4.0)[0]], 0)
        f = transform(f, mode, lam)
        d = knn_distance_and_spacing(f[None], 5, 8)[0]
        d = d[0] - sw * d[1]
        gh, gw = f.shape[1:]
        h, w = e['x'].shape[-2:]
        m = F.interpolate(d.reshape(1, 1, gh, gw), size=(h, w), mode='bilinear', align_corners=False)
        H, W = R[key]['size']
        maps[key] = gaussian_blur(m, K4)[0, 0, :H, :W].numpy()
    report(f"{spec:18s}", maps, R, cats)
