import pickle, sys, numpy as np, torch, torch.nn.functional as F, time, itertools
sys.path.insert(0, '/work/research')
from sklearn.metrics import roc_auc_score, average_precision_score
from edge.filters import gaussian_blur, gaussian_kernel
torch.set_num_threads(1)
R = pickle.load(open('feats2_real-dev.pkl', 'rb'))
S = pickle.load(open('feats2_stream.pkl', 'rb'))
R1 = pickle.load(open('feats_real-dev.pkl', 'rb'))
K = gaussian_kernel(4.0)
def feat(e, layers, agg=1):
    fs = []
    for l in layers:
        a = torch.from_numpy(e['a'][l]).float()
        if agg > 1: a = F.avg_pool2d(a[None], agg, 1, agg // 2, count_include_pad=False)[0]
        fs.append(F.normalize(a, dim=0))
    return torch.cat(fs) / len(fs) ** 0.5
def upmap(d, e):
    h, w = e['hw']
    m = F.interpolate(torch.as_tensor(d)[None, None].float(), size=(h, w), mode='bilinear', align_corners=False)
    m = gaussian_blur(m, K)[0, 0]
    H, W = e['size']
    return m[:H, :W].numpy()
def bank(n, layers, agg, seed=0):
    rng = np.random.default_rng(seed)
    allf = torch.cat([feat(e, layers, agg).flatten(1).T for e in S.values()])
    return allf[rng.choice(len(allf), size=min(n, len(allf)), replace=False)]
def memdist(e, B, layers, agg, k=1):
    f = feat(e, layers, agg); c, gh, gw = f.shape
    return torch.cdist(f.flatten(1).T, B).topk(k, largest=False).values.mean(1).reshape(gh, gw)
def evaluate(mapfn, label=''):
    cats = {}
    for k, e in R.items(): cats.setdefault(e['cat'], []).append(k)
    res = {}
    for c, ks in cats.items():
        maps = [mapfn(k) for k in ks]
        sc = [float(np.sort(m.ravel())[-max(1, int(0.001 * m.size)):].mean()) for m in maps]
        mm = np.concatenate([x.ravel() for x in maps]); t = np.concatenate([R[k]['mask'].ravel() for k in ks])
        res[c] = dict(pixel_auroc=roc_auc_score(t, mm), pixel_auprc=average_precision_score(t, mm), image_auroc=roc_auc_score([R[k]['label'] for k in ks], sc))
    mean = {m: np.mean([r[m] for r in res.values()]) for m in ('pixel_auroc', 'pixel_auprc', 'image_auroc')}
    print(f"{label:44s} AUROC {mean['pixel_auroc']:.3f} AUPRC {mean['pixel_auprc']:.3f} img {mean['image_auroc']:.3f} | " +
          ' '.join(f"{c[4:]}:{r['pixel_auroc']:.2f}/{r['pixel_auprc']:.2f}/{r['image_auroc']:.2f}" for c, r in res.items()), flush=True)
if __name__ == "__main__":
  cfgs = [(("relu3_4", "relu4_1"), 1), (("relu3_4", "relu4_1"), 3), (("relu4_1",), 3), (("relu3_1", "relu4_1"), 3), (("relu2_2", "relu3_4", "relu4_1"), 3), (("relu4_4",), 3), (("relu3_4", "relu4_4"), 3)]
  for layers, agg in cfgs:
      B = bank(20000, layers, agg)
      cache = {k: memdist(e, B, layers, agg, 3).numpy() for k, e in R.items()}
      evaluate(lambda k: upmap(cache[k], R[k]), f'mem {layers} agg{agg} k3')
      def comb(k, w=1.0):
          m = cache[k]; s = torch.as_tensor(R1[k]['d'])[None, None]
          s = F.interpolate(s, size=m.shape, mode='bilinear', align_corners=False)[0, 0].numpy()
          z = lambda x: (x - x.mean()) / (x.std() + 1e-8)
          return upmap(m / np.median(m) + w * s / np.median(s), R[k])
      evaluate(comb, '   + self-sim (median-normalised sum)')
