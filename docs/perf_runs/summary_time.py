"""How long a line's summary takes, and what its pooled pixel sample changes: `python docs/perf_runs/summary_time.py`.

Three cameras of 63 frames of 256 x 256 px with a ground-truth mask (a quarter of them with a 1500 px defect, its
pixels' scores raised by 2 over unit normal noise), the summary's accuracies (`StreamStats.stream_metrics`) computed
with each `max_pixels`; the time is one run's, on this machine, next to each other."""
from __future__ import annotations

import time

import numpy as np

from pipeline.stats import StreamStats


def filled(max_pixels: int) -> StreamStats:
    stats, rng = StreamStats(max_pixels=max_pixels), np.random.default_rng(1)
    for camera in ("a", "b", "c"):
        for i in range(63):
            truth = np.zeros(256 * 256, bool)
            if i % 4 == 0:
                truth[rng.integers(0, truth.size - 1500):][:1500] = True
            scores = rng.normal(size=truth.size).astype(np.float32) + 2.0 * truth
            stats.frames[camera] += 1
            stats._truth_frames.add((scores, truth, float(scores.max()), bool(truth.any()), camera, i))
    return stats


def main() -> None:
    print("| max_pixels | seconds | pixel AUROC / AUPRC | first half | last half | per camera AUPRC |")
    print("|---|---|---|---|---|---|")
    for max_pixels in (2**22, 2**20):
        stats = filled(max_pixels)
        start = time.perf_counter()
        m = stats.stream_metrics()
        took = time.perf_counter() - start
        halves = [f"{m[h]['pixel_auroc']} / {m[h]['pixel_auprc']}" for h in ("first_half", "last_half")]
        cameras = ", ".join(f"{c} {v['pixel_auprc']}" for c, v in m["cameras"].items())
        print(f"| {max_pixels} | {took:.1f} | {m['pixel_auroc']} / {m['pixel_auprc']} | {halves[0]} | {halves[1]} | "
              f"{cameras} |")


if __name__ == "__main__":
    main()
