"""What `score.knn_spacing_weight` costs, one thread, fp32, interleaved, medians of 15: (1) knn_distance on a 64 x 64
grid (a 256 px frame's 4 px cells) of 453 values (relu1_2 + relu2_2 + relu3_1 and the local statistics), as it is
and as it was before section 28 (edge/knn.py of commit 5bbf4a8, read with git); (2) the second channel the map then carries through upsampling and smoothing,
against the default scorer's whole pass on a 256 x 256 frame with a filled memory.
Usage (repository root): python docs/ablation_runs/knn_spacing/cost.py. Output: cost.log."""
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, '.')
from edge.config import SSDNetConfig  # noqa: E402
from edge.detector import Detector  # noqa: E402
from edge.knn import knn_distance_and_spacing  # noqa: E402

torch.set_num_threads(1)


def median_ms(fns: dict, runs: int = 15) -> dict:
    times = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: sorted(t)[len(t) // 2] * 1000 for k, t in times.items()}


f = F.normalize(torch.randn(1, 453, 64, 64), dim=1)


before: dict = {}
exec(subprocess.check_output(["git", "show", "5bbf4a8:edge/knn.py"], text=True), before)


det = Detector(SSDNetConfig(), "cpu")
scorer = det.scorer
x = torch.rand(1, 3, 256, 256)
bank = torch.randn_like(det.memory.bank.float()).half()
state = torch.tensor([float(len(bank)), 0.1, 0.5, 0.5, 0.0, 0.75, 0.1])
maps = {c: torch.rand(1, c, 64, 64) for c in (1, 2)}
PASS = "the scorer's whole pass (default, memory filled)"
with torch.inference_mode():
    m = median_ms({
        "kNN search, before": lambda: before["knn_distance"](f, 5, 8),
        "kNN search + spacing, now": lambda: knn_distance_and_spacing(f, 5, 8),
        "upsample + smooth, 1 channel": lambda: scorer._smooth(F.interpolate(maps[1], size=(256, 256), mode="bilinear")),
        "upsample + smooth, 2 channels": lambda: scorer._smooth(F.interpolate(maps[2], size=(256, 256), mode="bilinear")),
        PASS: lambda: scorer(x, bank, state, det.memory.spacing),
    })
for k, v in m.items():
    print(f"{k:50s} {v:8.1f} ms")
added = m["kNN search + spacing, now"] - m["kNN search, before"] + m["upsample + smooth, 2 channels"] - \
    m["upsample + smooth, 1 channel"]
print(f"added by the spacing term: {added:.1f} ms, {added / m[PASS]:.4f}x of the scorer's pass")
