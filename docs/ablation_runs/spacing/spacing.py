"""Offline: memory distance divided by, or less, the bank's own local density (its rows' mean distance to their
3 nearest other rows; LOF-like), 1x features."""
from common import *
def knn_in_bank(B, k=3, chunk=2000):
    out = []
    for i in range(0, len(B), chunk):
        d = torch.cdist(B[i:i + chunk], B)
        d[torch.arange(len(d)), torch.arange(i, i + len(d))] = float('inf')
        out.append(d.topk(k, largest=False).values.mean(1))
    return torch.cat(out)
if __name__ == "__main__":
    B = bank(1, 100)
    dens = knn_in_bank(B)
    print('bank density median', float(dens.median()), 'p90', float(dens.quantile(0.9)), flush=True)
    raw, lof, diff = {}, {}, {}
    for key, e in R.items():
        f = e[1].float(); c, gh, gw = f.shape
        d, idx = torch.cdist(f.flatten(1).T, B).topk(3, largest=False)
        dq = d.mean(1); rho = dens[idx].mean(1)
        raw[key] = dq.reshape(gh, gw).numpy()
        lof[key] = (dq / rho).reshape(gh, gw).numpy()
        diff[key] = (dq - rho).clamp_min(0).reshape(gh, gw).numpy()
    evaluate(lambda k: upmap(raw[k], R[k]), 'mem 1x raw')
    evaluate(lambda k: upmap(lof[k], R[k]), 'mem 1x / bank density (LOF)')
    evaluate(lambda k: upmap(diff[k], R[k]), 'mem 1x - bank density')
