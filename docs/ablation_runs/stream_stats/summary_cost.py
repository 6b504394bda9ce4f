"""The end-of-run summary of a long run with ground truth: 451 frames of 256x256, one camera (a synthetic camera
stopped after ~10 min): seconds and peak traced memory of StreamStats.summary().
Usage: python docs/ablation_runs/stream_stats/summary_cost.py"""
import time, tracemalloc
import numpy as np
from pipeline import protocol as P
from pipeline.stats import StreamStats
rng = np.random.default_rng(0)
stats = StreamStats()
for seq in range(451):
    mask = np.zeros((256, 256), np.uint8)
    if seq % 4 == 0:
        mask[100:120, 60:140] = 255
    amap = (rng.normal(size=(256, 256)) + 2.0 * (mask > 0)).astype(np.float16)
    h = P.AnomalyHeader(v=1, kind="anomaly", source="cam0", seq=seq, t_capture=1.0, stamps={"capture": 1.0},
                        payloads=(P.describe("map", amap),), score=1.0, threshold=3.0, label="normal",
                        model_version=1, fit_steps=0, fit_ms=0.0, score_ms=1.0, regions=())
    stats.add(P.Message(h, {"map": amap, "mask": mask}), delivered=2.0)
tracemalloc.start()
t = time.perf_counter()
s = stats.summary()["stream"]
print(f"summary {time.perf_counter() - t:.1f} s, peak traced {tracemalloc.get_traced_memory()[1] / 2**20:.0f} MB; "
      f"pixel AUROC {s['pixel_auroc']} AUPRC {s['pixel_auprc']} over {s.get('pixels', 'all')} pixels of {s['frames_sampled']} frames")
