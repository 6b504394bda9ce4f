"""What section 33's searches cost per frame, measured side by side in one run: the frame alone (the default's search),
the category's 4 good crops, and the stream's 11 earlier frames, each a 5-nearest search of the frame's 4096 cells
(the default's features, fp32, 2 threads; median of 5 repeats). Usage (repository root):
python docs/ablation_runs/ss_features/reference_cost.py CACHE.pkl (the cache of reference_bound.py; output:
reference_cost.log)."""
import pickle
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).parents[3]), str(Path(__file__).parents[1] / 'cross_frame')]
from common import near_mask, topk_nearest  # noqa: E402
from edge.local_stats import stats_features  # noqa: E402

torch.set_num_threads(2)
R = pickle.load(open(sys.argv[1], 'rb'))
ks = [k for k, e in R.items() if e['cat'] == 'bark']
F_ = {k: torch.cat([R[k]['g'].float()[None], 0.2 * stats_features(R[k]['x'][None].float(), 4, 4.0)], 1)[0]
      .flatten(1).T.contiguous() for k in ks}
k, n = ks[-1], len(F_[ks[-1]])
goods = [j for j in ks if R[j]['type'] == 'good']
own_mask = near_mask(*R[k]['g'].shape[-2:])
searches = {
    'the frame alone': lambda: topk_nearest(F_[k], F_[k], 5, own_mask),
    f'the {len(goods)} good crops': lambda: topk_nearest(F_[k], torch.cat([F_[j] for j in goods]), 5),
    f'the frame and its {len(ks) - 1} earlier frames': lambda: topk_nearest(
        F_[k], torch.cat([F_[k]] + [F_[j] for j in ks[:-1]]), 5,
        torch.cat([own_mask, torch.zeros(n, n * (len(ks) - 1), dtype=torch.bool)], 1)),
}
times = {}
for name, run in searches.items():
    run()  # warm-up
    reps = []
    for _ in range(5):
        t0 = time.perf_counter()
        run()
        reps.append(time.perf_counter() - t0)
    times[name] = statistics.median(reps)
base = times['the frame alone']
for name, t in times.items():
    print(f"{name:34s} {1000 * t:7.0f} ms  {t / base:5.2f}x")
