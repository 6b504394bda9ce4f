"""A line that alternates two products on one camera, through the node's own worker (`EdgeNode._process`: the
default SSDnet detector, node.threshold 3.0, a checkpoint folder): 40 normal frames of FIRST, then 60 of SECOND, 60
of FIRST and 60 of SECOND, with a drawn defect in every third frame after the first 40. Per segment: defects
flagged, normal frames flagged, image AUROC of the calibrated score; the node's product_changes, normal_moved and
normal_recalled.

    python docs/ablation_runs/changeover/alternating.py VARIANT FIRST SECOND [OUT.json]   # ~2.5 min on 2 CPU cores

VARIANT: `announced` (frames name their product; node.checkpoint_dir keeps each product's model), `scratch` (the
same without checkpoint_dir: the node keeps them in a temporary folder of its run, section 50), `afresh` (frames name
their product, the node saves no model: a changeover starts the camera afresh, as the node without checkpoint_dir
did before section 50) or `unannounced` (no product: the camera finds the changeover from its scores, section 47).
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from edge.synthetic import draw_defect, texture
from pipeline import protocol as P
from pipeline.config import NodeConfig
from pipeline.node import EdgeNode

SEGMENTS = 40, 60, 60, 60  # frames of FIRST, SECOND, FIRST, SECOND


def frames(first: str, second: str):
    """(product, frame, defective) for the whole stream; the first segment all normal."""
    rng = np.random.default_rng(0)
    sources = {name: texture(name, 320, np.random.default_rng(1)) for name in (first, second)}
    for k, n in enumerate(SEGMENTS):
        product = (first, second)[k % 2]
        for i in range(n):
            y, x = rng.integers(0, 64, 2)
            frame = sources[product][y:y + 256, x:x + 256].copy()
            defective = k > 0 and i % 3 == 2
            if defective:
                frame, _ = draw_defect(frame, rng)
            yield product, frame, defective


def main(variant: str, first: str, second: str, out: str | None) -> None:
    if variant not in ("announced", "scratch", "afresh", "unannounced"):
        raise SystemExit(f"unknown variant {variant!r}")
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as ckpt:
        cfg = NodeConfig(checkpoint_dir=Path(ckpt) if variant == "announced" else None)
        node = EdgeNode(cfg)
        if variant == "afresh":
            node._keep = lambda source, scratch=True: None  # no model saved, none to resume
        scores, labels, t0 = [], [], time.monotonic()
        for seq, (product, frame, defective) in enumerate(frames(first, second)):
            header = P.FrameHeader(kind="frame", source="line", seq=seq, t_capture=time.time(),
                                   payloads=(P.describe("image", frame),),
                                   product=product if variant != "unannounced" else None)
            node._process(P.Message(header, {"image": frame}))
            while not node.outbox.empty():
                msg = node.outbox.get()
                if isinstance(msg, P.Message) and msg.kind == "anomaly":
                    scores.append(msg.header.score)
                    labels.append(defective)
        counters = node.counters.source("line")
    cal, lab = np.array(scores), np.array(labels)
    segments, start = [], SEGMENTS[0]
    for k, n in enumerate(SEGMENTS[1:], 1):
        c, m = cal[start:start + n], lab[start:start + n]
        segments.append({"product": (first, second)[k % 2], "frames": f"{start}-{start + n - 1}",
                         "defects_flagged": int((c[m] > cfg.threshold).sum()), "defects": int(m.sum()),
                         "normal_flagged": int((c[~m] > cfg.threshold).sum()), "normal": int((~m).sum()),
                         "image_auroc": round(float(roc_auc_score(m, c)), 3)})
        start += n
    cells = "; ".join(f"{s['defects_flagged']}/{s['defects']}, {s['normal_flagged']}/{s['normal']}, "
                      f"{s['image_auroc']:.3f}" for s in segments)
    print(f"| {first} <-> {second} | {variant} | {counters['product_changes']} | {counters['normal_moved']} | "
          f"{counters['normal_recalled']} | "
          f"{cells} | {time.monotonic() - t0:.0f} s |")
    if out:
        with open(out, "w") as f:
            json.dump({"first": first, "second": second, "variant": variant, "counters": counters,
                       "segments": segments, "calibrated": cal.round(3).tolist()}, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:4], sys.argv[4] if len(sys.argv) > 4 else None)
