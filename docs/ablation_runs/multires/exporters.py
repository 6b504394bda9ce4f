"""ONNX Runtime's warm 256x256 frame, default config, full bank, one thread: the TorchScript graph against the dynamo one."""
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
scorers = {ex: OnnxRuntimeScorer(copy.deepcopy(det.scorer), exporter=ex, threads=1) for ex in ("torchscript", "dynamo")}
for s in scorers.values():
    s.use_memory(det.memory)
x = torch.rand(1, 3, 256, 256)
times = {ex: [] for ex in scorers}
for ex, s in scorers.items():
    s.score(x)
for _ in range(6):
    for ex, s in scorers.items():
        t = time.perf_counter(); s.score(x); times[ex].append((time.perf_counter() - t) * 1e3)
a, b = (scorers[e].score(x)[0] for e in scorers)
for ex in times:
    print(f"{ex:12s} median {np.median(times[ex]):6.0f} ms  min {min(times[ex]):6.0f} ms")
print(f"dynamo / torchscript: {np.median(times['dynamo']) / np.median(times['torchscript']):.2f}x; max |map diff| {float((a - b).abs().max()):.1e}")
