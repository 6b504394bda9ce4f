"""Mixed frame sizes on ONNX Runtime (docs/export.md, "Frames of mixed sizes"), on real-dev, the default config, CPU:

1. what a graph for a new input size costs: the first frame's export and session, and the process's memory;
2. parity with the fp32 torch scorer, and the time per frame, of the graphs that take the frame's size as an input
   (one per padded input size) against the graphs that hold it as a constant (one per frame size, before
   2026-12-06), on every 9th real-dev frame, with a real memory (a torch detector streamed mtd_crack's first 16);
3. the other way considered: a frame padded further, into a larger graph's input, against the torch scorer on it;
4. the node's rule (pipeline.node: a new graph at most every node.min_model_rebuild_s, 10 s; the last MAX_GRAPHS held)
   on a camera streaming real-dev in name order at a few frame rates (a model of the rule: frames scored in time).

    PYTHONPATH=. python docs/ablation_runs/mixed_sizes/mixed_sizes.py [threads]   # mixed_sizes.log: 1 thread
"""
import contextlib
import glob
import statistics
import sys
import time
from collections import OrderedDict

import cv2
import psutil
import torch
import torch.nn.functional as F

from edge.config import ScoreConfig, SSDNetConfig, parse_config
from edge.detector import Detector
from edge.fitter import image_to_tensor
from edge.scorers import OnnxRuntimeScorer, TorchScorer, graph_size, parity_check
from edge.scorers.base import MAX_GRAPHS

DATA = "/work/shared/datasets/real-dev"
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
CPU = torch.device("cpu")


def read(path: str):
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


@contextlib.contextmanager
def frame_constant():
    """The graphs before: the frame's size a constant, one graph per frame size."""
    saved = ScoreConfig.frame_input
    ScoreConfig.frame_input = property(lambda self: False)
    try:
        yield
    finally:
        ScoreConfig.frame_input = saved


def timed(scorer, x: torch.Tensor, frame: tuple[int, int]):
    """The scorer's (map, score) and the seconds it took."""
    t0 = time.perf_counter()
    out = scorer.score(x, frame)
    return out, time.perf_counter() - t0


def parity(ref, got, h: int, w: int):
    return parity_check(ref[0][..., :h, :w].numpy(), ref[1].numpy(), got[0][..., :h, :w].numpy(), got[1].numpy())


cfg = parse_config(SSDNetConfig, {"score": {"backend": "torch", "amp": False}, "fit": {"amp": False}})
det = Detector(cfg, "cpu")
for p in sorted(glob.glob(f"{DATA}/mtd_crack/test/*/*.png"))[:16]:
    det.process(read(p))
module = det.backend.module
ref, new, old = TorchScorer(module), OnnxRuntimeScorer(module), OnnxRuntimeScorer(module)
for s in (ref, new, old):
    s.use_memory(det.memory)
print(f"threads {torch.get_num_threads()}; memory rows {det.memory.count}")

print("\n1. a new input size's graph (frame input), its first frame")
proc, fresh = psutil.Process(), OnnxRuntimeScorer(module)
for h, w in ((256, 256), (1024, 1024)):
    x = torch.rand(1, 3, h, w)
    rss = proc.memory_info().rss
    _, first = timed(fresh, x, (h - 5, w - 3))
    grown = (proc.memory_info().rss - rss) / 2**20
    _, warm = timed(fresh, x, (h - 5, w - 3))
    print(f"{h}x{w}: first frame {first:.2f} s (export {fresh.last_export_s:.2f} s, session "
          f"{fresh.last_session_s:.2f} s), next frame {warm * 1000:.0f} ms; RSS +{grown:.0f} MB")
del fresh

print("\n2. frame input (new) vs frame constant (before) vs fp32 torch; maps on the frame, in the torch map's std")
print("frame    input    new: map max  map mean  |score|   before: map max  |score|  new-before map  "
      "new / before per frame")
paths = sorted(glob.glob(f"{DATA}/mtd_*/test/*/*.png"))[::9]
ratios, worst, inputs = [], [0.0, 0.0, 0.0], set()
for p in paths:
    img = read(p)
    h, w = img.shape[:2]
    x = image_to_tensor(img, CPU, 64)
    inputs.add(tuple(x.shape[-2:]))
    r = ref.score(x, (h, w))
    new.score(x, (h, w))  # its padded size's graph, once
    with frame_constant():
        old.score(x, (h, w))  # this frame size's graph
    t_new, t_old = [], []
    for _ in range(5):  # interleaved
        g, t = timed(new, x, (h, w))
        t_new.append(t)
        with frame_constant():
            o, t = timed(old, x, (h, w))
        t_old.append(t)
    a, b = parity(r, g, h, w), parity(r, o, h, w)
    same = float((g[0] - o[0])[..., :h, :w].abs().max())
    ratio = statistics.median(t_new) / statistics.median(t_old)
    ratios.append(ratio)
    worst = [max(worst[0], a.map_max_abs), max(worst[1], a.map_mean_abs), max(worst[2], a.score_abs)]
    print(f"{h:3d}x{w:<3d} {x.shape[-2]}x{x.shape[-1]}  {a.map_max_abs:.1e}  {a.map_mean_abs:.1e}  {a.score_abs:.1e}"
          f" {'ok' if a.ok else 'FAIL'}   {b.map_max_abs:.1e}  {b.score_abs:.1e}   {same:.1e}         "
          f"{statistics.median(t_new) * 1000:4.0f} / {statistics.median(t_old) * 1000:4.0f} ms = {ratio:.3f}")
print(f"worst (new): map max {worst[0]:.1e}, mean {worst[1]:.1e} std, |score diff| {worst[2]:.1e}; time new / before: "
      f"median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
print(f"sessions for {len(paths)} frames: {new.sessions_created} with the frame an input ({len(inputs)} input sizes), "
      f"{old.sessions_created} with it a constant")

print("\n3. padded further into a larger input (torch, the frame given), against the torch scorer on its own input")
for p in paths[:4]:
    img = read(p)
    h, w = img.shape[:2]
    x = image_to_tensor(img, CPU, 64)
    r = ref.score(x, (h, w))
    for mode in ("reflect", "replicate", "constant"):  # 64 px more rows and columns
        big = F.pad(x, (0, 64, 0, 64), mode=mode)
        rep = parity(r, ref.score(big, (h, w)), h, w)
        print(f"{h}x{w} in {big.shape[-2]}x{big.shape[-1]} ({mode:9s}): map max {rep.map_max_abs:.2f}, "
              f"mean {rep.map_mean_abs:.3f} std, |score diff| {rep.score_abs:.3f}: {'ok' if rep.ok else 'FAIL'}")

print("\n4. the node's rule on real-dev streamed in name order (a model of pipeline.node: 10 s, 4 graphs held)")
sizes = [read(p).shape[:2] for p in sorted(glob.glob(f"{DATA}/*/test/*/*.png"))]
for fps in (1.0, 0.2, 0.1):
    for backend, what in (("tensorrt", "frame size (before)"), ("onnxruntime", "input size")):
        held, last_new, refused, built = OrderedDict(), -float("inf"), 0, 0
        for i, (h, w) in enumerate(sizes):
            key = graph_size(backend, cfg, h, w)
            if key not in held:
                if held and i / fps - last_new < 10:
                    refused += 1
                    continue
                last_new, built = i / fps, built + 1
            held[key] = True
            held.move_to_end(key)
            while len(held) > MAX_GRAPHS:
                held.popitem(last=False)
        print(f"{fps:g} fps, a graph per {what}: {refused} of {len(sizes)} frames refused, {built} graphs built")
