"""Does a defect near the bottom/right border find its own mirror image in the reflect padding? The frame's
self-similarity (section 28's default: less 0.75 x its neighbours' spacing, centred) with the padding's cells as
neighbours (before) or kept out, the spacing centred on all cells or on the frame's (docs/ablations.md section 30).
Usage (repository root): python docs/ablation_runs/line_stats/cache.py ../shared/datasets/real-dev real.pkl
mtd_blowhole,mtd_break,mtd_crack,mtd_fray,mtd_uneven (on a CPU without native bf16 drop its autocast), then
python docs/ablation_runs/padding/pad_ref.py real.pkl (output: pad_ref.log)."""
import sys, pickle, torch, torch.nn.functional as F
sys.path[:0] = ['.', 'docs/ablation_runs/cross_frame']
from common import report
from edge.filters import gaussian_blur, gaussian_kernel
from edge.knn import knn_distance_and_spacing
from edge.local_stats import stats_features
torch.set_num_threads(1)
R = pickle.load(open(sys.argv[1], 'rb'))
K4 = gaussian_kernel(4.0)


def amap(e, exclude_pad, spacing=0.75, k=5, r=8, valid_mean=None):
    """The map with the product's self-similarity (edge.knn, `frame` keeps the padding out); its spacing term comes
    centred on all cells, and re-centred on the frame's cells for `valid_mean`."""
    valid_mean = exclude_pad if valid_mean is None else valid_mean
    x = e['x'][None].float()
    f = torch.cat([e['g'].float(), 0.2 * stats_features(x, 4, 4.0)[0]], 0)
    gh, gw = f.shape[1:]
    h, w = e['x'].shape[-2:]
    H, W = e['size']
    cells = (-(-H // (h // gh)), -(-W // (w // gw)))
    d, wider = knn_distance_and_spacing(f[None], k, r, cells if exclude_pad else None)[0]
    if valid_mean:
        wider = wider - wider[: cells[0], : cells[1]].mean()
    m = gaussian_blur(F.interpolate((d - spacing * wider)[None, None], size=(h, w), mode='bilinear',
                                    align_corners=False), K4)
    return m[0, 0, :H, :W].numpy()


cats = {}
for key, e in R.items():
    cats.setdefault(e['cat'], []).append(key)
padded = sum(tuple(e['x'].shape[-2:]) != tuple(e['size']) for e in R.values())
print(f"{padded} of {len(R)} frames padded", flush=True)
report("pad as reference ", {key: amap(e, False) for key, e in R.items()}, R, cats)
report("pad kept out     ", {key: amap(e, True) for key, e in R.items()}, R, cats)
report("out, mean of all ", {key: amap(e, True, valid_mean=False) for key, e in R.items()}, R, cats)
report("in, mean of valid", {key: amap(e, False, valid_mean=True) for key, e in R.items()}, R, cats)
