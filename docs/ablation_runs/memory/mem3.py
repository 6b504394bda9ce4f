import pickle, sys, numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, '/work/research/scratch')
from mem2 import *  # noqa  (R, S, R1, feat, upmap, bank, memdist, evaluate)
layers, agg = ("relu3_1", "relu4_1"), 3
rng = np.random.default_rng(0)
keys = list(S)
allf = torch.cat([feat(S[k], layers, agg).flatten(1).T for k in keys[:150]])
B = allf[rng.choice(len(allf), 20000, replace=False)]
def smap(e, shape):
    s = torch.as_tensor(e['d'])[None, None]
    return F.interpolate(s, size=shape, mode='bilinear', align_corners=False)[0, 0].numpy()
held = [memdist(S[k], B, layers, agg, 3).numpy() for k in keys[150:]]
S1 = pickle.load(open('feats_stream.pkl', 'rb'))
mmed = np.median(np.concatenate([h.ravel() for h in held])); smed = np.median(np.concatenate([S1[k]['d'].ravel() for k in keys[150:]]))
m_q = np.quantile(np.concatenate([h.ravel() for h in held]), 0.99); s_q = np.quantile(np.concatenate([S1[k]['d'].ravel() for k in keys[150:]]), 0.99)
print('medians', mmed, smed, 'q99', m_q, s_q)
cache = {k: memdist(e, B, layers, agg, 3).numpy() for k, e in R.items()}
evaluate(lambda k: upmap(cache[k], R[k]), 'mem alone')
for w in (0.1, 0.25, 0.5):
    evaluate(lambda k: upmap(cache[k] / mmed + w * smap(R1[k], cache[k].shape) / smed, R[k]), f'mem/med + {w} self/med')
for tau in (1.0, 1.5):
    evaluate(lambda k: upmap(cache[k] / mmed + np.maximum(0, smap(R1[k], cache[k].shape) / smed - tau), R[k]), f'mem/med + relu(self/med - {tau})')
evaluate(lambda k: upmap(np.maximum(cache[k] / m_q, smap(R1[k], cache[k].shape) / s_q), R[k]), 'max(mem/q99, self/q99)')
# self-sim at full 4px resolution added after upsampling
def fine(k, w):
    e = R[k]; m = upmap(cache[k], e) / mmed
    s = torch.as_tensor(R1[k]['d'])[None, None]; h, wd = e['hw']
    s = gaussian_blur(F.interpolate(s, size=(h, wd), mode='bilinear', align_corners=False), K)[0, 0].numpy()[:e['size'][0], :e['size'][1]] / smed
    return m + w * s
for w in (0.25, 0.5):
    evaluate(lambda k: fine(k, w), f'fine: mem/med + {w} self/med (4px)')
