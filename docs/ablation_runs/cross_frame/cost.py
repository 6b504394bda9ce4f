"""What a cross-frame history would cost: the default's own self-similarity (edge.knn.knn_distance, 4096 cells of
453 values, a 256x256 frame) against the 5 nearest of a history of R rows, fp32 and bf16, one thread, best of 3.
Usage: python docs/ablation_runs/cross_frame/cost.py"""
import sys, time, torch
sys.path.insert(0, '.')
from edge.knn import knn_distance
torch.set_num_threads(1)
torch.manual_seed(0)

def best(fn):
    ts = []
    for _ in range(3):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return min(ts)

f = torch.randn(1, 453, 64, 64)
own = best(lambda: knn_distance(f, 5, 8))
print(f"own self-similarity: {own * 1000:.0f} ms")
q = f[0].reshape(453, -1).T.contiguous()
for rows in (4096, 8192, 11264, 45056):
    h = torch.randn(rows, 453)
    for dt in (torch.float32, torch.bfloat16):
        a, b = q.to(dt), h.to(dt)
        t = best(lambda: (2 * a @ b.T - (b.float() * b.float()).sum(1).to(dt)[None]).topk(5, dim=1))
        print(f"history of {rows:5d} rows, {str(dt)[6:]:8s}: {t * 1000:5.0f} ms = {t / own:.2f}x the own self-similarity")
