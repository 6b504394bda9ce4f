"""ONNX Runtime's warm 256x256 frame, default config, one thread: the TorchScript graph against the dynamo one, with
the bank full and with a young camera's 2304 rows (both graphs search its filled rows alone: their bank axis is
dynamic, the dynamo graph's since the later run of 2026-12-04; before, it searched the whole allocation)."""
import copy, time, torch, numpy as np
from edge.config import SSDNetConfig
from edge.detector import Detector
from edge.scorers import OnnxRuntimeScorer
from edge.synthetic import texture
from tools.bench import fill_bank
torch.set_num_threads(1)
det = Detector(SSDNetConfig(), "cpu")
det.process(texture("brick", 256, np.random.default_rng(0)))
fill_bank(det.memory)
young = copy.deepcopy(det.memory)
young.count = 2304
scorers = {}
for ex in ("torchscript", "dynamo"):
    for bank, memory in (("full", det.memory), ("young", young)):
        scorers[ex, bank] = OnnxRuntimeScorer(copy.deepcopy(det.scorer), exporter=ex, threads=1)
        scorers[ex, bank].use_memory(memory)
x = torch.rand(1, 3, 256, 256)
times = {key: [] for key in scorers}
for s in scorers.values():
    s.score(x)
for _ in range(6):
    for key, s in scorers.items():
        t = time.perf_counter(); s.score(x); times[key].append((time.perf_counter() - t) * 1e3)
for key in times:
    rows = len(scorers[key].memory_inputs(x.device)[0])
    print(f"{key[0]:12s} {key[1]:6s} bank rows searched {rows:6d}  median {np.median(times[key]):6.0f} ms  min {min(times[key]):6.0f} ms")
for bank in ("full", "young"):
    a, b = (scorers[ex, bank].score(x)[0] for ex in ("torchscript", "dynamo"))
    ratio = np.median(times["dynamo", bank]) / np.median(times["torchscript", bank])
    print(f"{bank} bank, dynamo / torchscript: {ratio:.2f}x; max |map diff| {float((a - b).abs().max()):.1e}")
