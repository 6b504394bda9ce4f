"""What one exported scorer graph (an ONNX Runtime session) costs the node's process, with the real SSDnet
detector at the default config on the CPU (pipeline/admission.py GRAPH_FIXED_MB, GRAPH_BYTES_PER_PIXEL):

    python docs/security_runs/measure_graphs.py [HxW ...]        # default: SIZES, 96x160 to 1024x1024
    python docs/security_runs/measure_graphs.py held [HxW ...]   # the sizes' graphs held together, in one process

Each size runs in a fresh process (torch 1 thread, so the scorer's ONNX Runtime intra-op threads are 1, as the node's
`node.threads: 1`): a detector on `score.backend: onnxruntime` as the node builds one (pipeline.node.SSDNetDetectors)
scores two 64x64 frames (its model, memory, optimiser and a 64x64 graph are then built and warm); then its scorer
scores two H x W frames (export, session, its arena), the padded input as the detector hands it. `graph_mb`: the
process's RSS after those two frames above its RSS before them, `peak_mb`: the most RSS above it meanwhile (sampled
every 20 ms; the export's transient), `export_s`, `session_s`: the times the scorer took to build the graph,
`estimate_mb`: what the node's budget counts for it (GRAPH_FIXED_MB + GRAPH_BYTES_PER_PIXEL x H x W).
`held`: one process builds the sizes' graphs in turn (at most MAX_GRAPHS are held), RSS above the warm detector after
each (default 128x128 192x192 256x256 128x192 320x320). Prints one JSON object; docs/security_runs/measure_graphs.log
has the runs on the 2-core development VM.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import psutil
import torch

from edge.config import SSDNetConfig
from edge.fitter import image_to_tensor
from edge.synthetic import texture
from pipeline.admission import GRAPH_BYTES_PER_PIXEL, GRAPH_FIXED_MB
from pipeline.node import SSDNetDetectors

SIZES = ("96x160", "128x128", "200x300", "256x256", "384x256", "320x320", "448x448", "512x512", "480x640", "640x640",
         "1024x1024")  # (not multiples of 64: the detector pads them, e.g. 96x160 to 128x192)
HELD = ("128x128", "192x192", "256x256", "128x192", "320x320")


class Peak(threading.Thread):
    """Samples this process's RSS every 20 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.halt = psutil.Process(), 0, threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.02):
            self.peak = max(self.peak, self.proc.memory_info().rss)


def _frame(h: int, w: int, seed: int) -> np.ndarray:
    return np.ascontiguousarray(texture("grass", max(h, w), np.random.default_rng(seed))[:h, :w])


def _warm_detector():
    torch.set_num_threads(1)
    cfg = SSDNetConfig.model_validate({"score": {"backend": "onnxruntime"}, "device": "cpu"})
    det = SSDNetDetectors(cfg)("cam0")
    for seed in range(2):
        det.process(_frame(64, 64, seed))
    return det


def _graph(det, h: int, w: int) -> dict:
    """Score two h x w frames through the detector's scorer (the first builds its graph): RSS after and peak."""
    proc, peak = psutil.Process(), Peak()
    rss0 = proc.memory_info().rss
    peak.start()
    for seed in range(2):
        x = image_to_tensor(_frame(h, w, seed), det.device, det.fitter.multiple)
        det.backend.score(x, (h, w))
        if seed == 0:
            export_s, session_s = det.backend.last_export_s, det.backend.last_session_s
    peak.halt.set()
    peak.join()
    rss1 = proc.memory_info().rss
    return {"size": f"{h}x{w}", "pixels": h * w, "input": list(x.shape[2:]),
            "graph_mb": round((rss1 - rss0) / 2**20, 1), "peak_mb": round((max(peak.peak, rss1) - rss0) / 2**20, 1),
            "export_s": round(export_s, 1), "session_s": round(session_s, 1), "sessions": det.backend.sessions_created,
            "estimate_mb": round(GRAPH_FIXED_MB + GRAPH_BYTES_PER_PIXEL * h * w / 2**20)}


def _sides(size: str) -> tuple[int, int]:
    h, w = size.split("x")
    return int(h), int(w)


def one(size: str) -> dict:
    return _graph(_warm_detector(), *_sides(size))


def held(sizes: list[str]) -> list[dict]:
    det = _warm_detector()
    rss0 = psutil.Process().memory_info().rss
    steps = []
    for size in sizes:
        step = _graph(det, *_sides(size))
        step["held_mb"] = round((psutil.Process().memory_info().rss - rss0) / 2**20, 1)
        step["graphs"] = len(det.backend._graphs)
        steps.append(step)
    return steps


def _print(key: str, runs: list[dict]) -> None:
    """One JSON object, a line per run."""
    print(f'{{"{key}": [\n' + ",\n".join(json.dumps(r) for r in runs) + "\n]}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["one"]:
        print(json.dumps(one(args[1])))
    elif args[:1] == ["held"]:
        _print("held", held(args[1:] or list(HELD)))
    else:
        runs = [json.loads(subprocess.run([sys.executable, __file__, "one", size], check=True, capture_output=True,
                                          text=True).stdout.splitlines()[-1]) for size in args or SIZES]
        _print("fresh_process_per_size", runs)
