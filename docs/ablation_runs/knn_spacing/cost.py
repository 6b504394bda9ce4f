"""What `score.knn_spacing_weight` costs: knn_distance on a 64 x 64 grid (a 256 px frame's 4 px cells) of 453
values (relu1_2 + relu2_2 + relu3_1 and the local statistics), one thread, fp32, with and without the spacing,
interleaved. Usage (repository root): python docs/ablation_runs/knn_spacing/cost.py. Output: cost.log."""
import sys, time, torch
sys.path.insert(0, '.')
from edge.knn import knn_distance
torch.set_num_threads(1)
f = torch.nn.functional.normalize(torch.randn(1, 453, 64, 64), dim=1)
times = {0.0: [], 0.75: []}
for _ in range(15):
    for w in times:
        t0 = time.perf_counter()
        knn_distance(f, 5, 8, w)
        times[w].append(time.perf_counter() - t0)
med = {w: sorted(t)[len(t) // 2] * 1000 for w, t in times.items()}
print(f"knn_distance, 4096 cells, median of 15: spacing off {med[0.0]:.1f} ms, on {med[0.75]:.1f} ms, "
      f"ratio {med[0.75] / med[0.0]:.3f}")
