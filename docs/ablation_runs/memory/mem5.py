"""textures-dev streamed memory: memory = admitted cells of earlier frames of the category stream."""
import sys, pickle, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, '/work/research/scratch'); sys.path.insert(0, '/work/research')
from sklearn.metrics import roc_auc_score, average_precision_score
from edge.filters import gaussian_blur, gaussian_kernel
torch.set_num_threads(1)
T2 = pickle.load(open('feats2_textures-dev.pkl', 'rb'))
T1 = pickle.load(open('feats_textures-dev.pkl', 'rb'))
K = gaussian_kernel(4.0)
def feat(e, layers=("relu3_1", "relu4_1"), agg=3):
    fs = []
    for l in layers:
        a = torch.from_numpy(e['a'][l]).float()
        if agg > 1: a = F.avg_pool2d(a[None], agg, 1, agg // 2, count_include_pad=False)[0]
        fs.append(F.normalize(a, dim=0))
    return torch.cat(fs) / len(fs) ** 0.5
def up(d, e):
    h, w = e['hw']
    m = F.interpolate(torch.as_tensor(d)[None, None].float(), size=(h, w), mode='bilinear', align_corners=False)
    return gaussian_blur(m, K)[0, 0][:e['size'][0], :e['size'][1]].numpy()
cats = {}
for k, e in T2.items(): cats.setdefault(e['cat'], []).append(k)
def run(w, per_frame=128, admit=True, label=''):
    res = {}
    for c, ks in cats.items():
        bank = None; maps = []; scores = []
        rng = np.random.default_rng(0)
        for k in ks:
            f = feat(T2[k]); C, gh, gw = f.shape; q = f.flatten(1).T
            s = torch.as_tensor(T1[k]['d'])[None, None]
            s = F.interpolate(s, size=(gh, gw), mode='bilinear', align_corners=False)[0, 0]
            if bank is not None and len(bank) >= 3 and w > 0:
                m = torch.cdist(q, bank).topk(3, largest=False).values.mean(1).reshape(gh, gw)
                b = (s + w * m) / (1 + w)
            else:
                b = s
            amap = up(b.numpy(), T2[k]); maps.append(amap)
            scores.append(float(np.sort(amap.ravel())[-max(1, int(0.001 * amap.size)):].mean()))
            bv = b.flatten()
            keep = bv < bv.median() + 3 * 1.4826 * (bv - bv.median()).abs().median() if admit else torch.ones_like(bv, dtype=bool)
            idx = torch.nonzero(keep)[:, 0]
            idx = idx[torch.from_numpy(rng.permutation(len(idx))[:per_frame])]
            bank = q[idx] if bank is None else torch.cat([bank, q[idx]])
        mm = np.concatenate([x.ravel() for x in maps]); t = np.concatenate([T2[k]['mask'].ravel() for k in ks])
        res[c] = (roc_auc_score(t, mm), average_precision_score(t, mm), roc_auc_score([T2[k]['label'] for k in ks], scores))
    a = np.mean([r[0] for r in res.values()]); p = np.mean([r[1] for r in res.values()]); i = np.mean([r[2] for r in res.values()])
    print(f'{label:30s} w={w} pf={per_frame} admit={admit}: AUROC {a:.3f} AUPRC {p:.3f} img {i:.3f} | ' + ' '.join(f'{c[:5]}:{r[0]:.2f}/{r[1]:.2f}' for c, r in res.items()), flush=True)
run(0, label='self-sim only')
for w in (1, 3, 6):
    run(w)
run(3, admit=False)
run(3, per_frame=512)
