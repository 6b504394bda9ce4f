"""What one exported scorer graph (an ONNX Runtime session) costs the node's process, with the real SSDnet
detector at the default config on the CPU (pipeline/admission.py GRAPH_FIXED_MB, GRAPH_BYTES_PER_PIXEL):

    python docs/security_runs/measure_graphs.py [HxW ...]        # default: SIZES, 96x160 to 1024x1024
    python docs/security_runs/measure_graphs.py held [HxW ...]   # the sizes' graphs held together, in one process
    python docs/security_runs/measure_graphs.py options [--variants=a,b] [--latency=a,b] [--frames=N] [HxW ...]
                                                                 # ONNX Runtime's arena / memory pattern on and off

Each size runs in a fresh process (torch 1 thread, so the scorer's ONNX Runtime intra-op threads are 1, as the node's
`node.threads: 1`): a detector on `score.backend: onnxruntime` as the node builds one (pipeline.node.SSDNetDetectors)
scores two 64x64 frames (its model, memory, optimiser and a 64x64 graph are then built and warm); then its scorer
scores two H x W frames (export, session, its arena), the padded input as the detector hands it. `graph_mb`: the
process's RSS after those two frames above its RSS before them, `peak_mb`: the most RSS above it meanwhile (sampled
every 20 ms; the export's transient), `export_s`, `session_s`: the times the scorer took to build the graph,
`estimate_mb`: what the node's budget counts for it (GRAPH_FIXED_MB + GRAPH_BYTES_PER_PIXEL x H x W).
`held`: one process builds the sizes' graphs in turn (at most MAX_GRAPHS are held), RSS above the warm detector after
each (default 128x128 192x192 256x256 128x192 320x320).
`options`: the session options of the scorer's graphs (the first two modes use the scorer's own), per size (default
OPTION_SIZES) and VARIANTS (`arena+pattern`: ONNX Runtime's defaults, `enable_cpu_mem_arena` and `enable_mem_pattern`
on; `arena`: the memory pattern off; `pattern`: the arena off; `neither`: both off), set explicitly whatever the
scorer's default. Memory, a fresh process per size and variant: three H x W frames scored (the first builds the graph),
`graph_mb` the RSS held after them above before them, `build_peak_mb` the peak RSS during the first (export, session,
first run), `score_peak_mb` during the two warm ones, both above the RSS before the first, and `score_transient_mb` the
most a warm score's peak rose above the RSS just before it (peaks from the kernel's VmHWM, reset before each score via
/proc/self/clear_refs: exact, not sampled). Latency, one process per size: a graph per variant (of `--latency`,
default all of `--variants`) on one warm detector, scored in rounds (the variants' order rotated each round),
`--frames` (10) warm rounds after 2; `median_ms` per variant, `ratio` its median over the first variant's and
`round_ratio` the median of the per-round ratios. Prints one JSON object; docs/security_runs/measure_graphs.log has the
runs on the 2-core development VM.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

import numpy as np
import psutil
import torch
from measure_admission import Peak  # this folder's: sys.path[0] when run as a script

from edge.config import SSDNetConfig
from edge.fitter import image_to_tensor
from edge.synthetic import texture
from pipeline.admission import GRAPH_BYTES_PER_PIXEL, GRAPH_FIXED_MB
from pipeline.node import SSDNetDetectors

SIZES = ("96x160", "128x128", "200x300", "256x256", "384x256", "320x320", "448x448", "512x512", "480x640", "640x640",
         "1024x1024")  # (not multiples of 64: the detector pads them, e.g. 96x160 to 128x192)
HELD = ("128x128", "192x192", "256x256", "128x192", "320x320")
OPTION_SIZES = ("128x128", "256x256", "512x512")
VARIANTS = {"arena+pattern": (True, True), "arena": (True, False), "pattern": (False, True), "neither": (False, False)}


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
    proc, peak = psutil.Process(), Peak(0.02)
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


def _with_options(backend, variant: str) -> None:
    """The scorer's graphs built from now on get its session options with the variant's arena and memory pattern."""
    arena, pattern = VARIANTS[variant]

    def options():
        so = type(backend)._session_options(backend)
        so.enable_cpu_mem_arena, so.enable_mem_pattern = arena, pattern
        return so

    backend._session_options = options


def _hwm_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak RSS (VmHWM) := the RSS now


def _hwm() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def variant_memory(size: str, variant: str, frames: int = 3) -> dict:
    """RSS held by one graph built with the variant's options after `frames` scores, and the peaks while scoring."""
    det = _warm_detector()
    _with_options(det.backend, variant)
    h, w = _sides(size)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    peaks, transients = [], []
    for seed in range(frames):
        x = image_to_tensor(_frame(h, w, seed), det.device, det.fitter.multiple)
        before = proc.memory_info().rss
        _hwm_reset()
        det.backend.score(x, (h, w))
        peaks.append(_hwm())
        transients.append(peaks[-1] - before)
    rss1 = proc.memory_info().rss
    mb = 2**20
    return {"size": size, "variant": variant, "input": list(x.shape[2:]), "graph_mb": round((rss1 - rss0) / mb, 1),
            "build_peak_mb": round((peaks[0] - rss0) / mb, 1), "score_peak_mb": round((max(peaks[1:]) - rss0) / mb, 1),
            "score_transient_mb": round(max(transients[1:]) / mb, 1), "export_s": round(det.backend.last_export_s, 1),
            "session_s": round(det.backend.last_session_s, 2), "sessions": det.backend.sessions_created}


def variant_latency(size: str, variants: list[str], frames: int = 10, warm: int = 2) -> dict:
    """Per-frame score latency of the variants' graphs, interleaved on one warm detector."""
    from edge.scorers.base import GraphCache

    det = _warm_detector()
    backend, (h, w) = det.backend, _sides(size)
    caches = {v: GraphCache() for v in variants}
    xs = [image_to_tensor(_frame(h, w, seed), det.device, det.fitter.multiple) for seed in range(2)]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(warm + frames):
        k = r % len(variants)
        for v in variants[k:] + variants[:k]:
            backend._graphs = caches[v]
            _with_options(backend, v)
            t0 = time.perf_counter()
            backend.score(xs[r % 2], (h, w))
            if r >= warm:
                times[v].append(time.perf_counter() - t0)
    ref = variants[0]
    med = {v: statistics.median(t) for v, t in times.items()}
    return {"size": size, "frames": frames, "reference": ref, "variants": [
        {"variant": v, "median_ms": round(1000 * med[v], 1), "min_ms": round(1000 * min(times[v]), 1),
         "ratio": round(med[v] / med[ref], 3),
         "round_ratio": round(statistics.median(a / b for a, b in zip(times[v], times[ref], strict=True)), 3)}
        for v in variants]}


def _last_json(args: list[str]):
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def options(args: list[str]) -> dict:
    flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--"))
    sizes = [a for a in args if not a.startswith("--")] or list(OPTION_SIZES)
    variants = flags.get("variants", ",".join(VARIANTS)).split(",")
    timed = flags.get("latency", ",".join(variants)).split(",")
    frames = flags.get("frames", "10")
    memory = [_last_json(["variant", size, v]) for size in sizes for v in variants]
    latency = [_last_json(["latency", size, ",".join(timed), frames]) for size in sizes] if timed != [""] else []
    return {"memory": memory, "latency": latency}


def _print(**lists: list[dict]) -> None:
    """One JSON object of the named lists, a line per run."""
    print("{" + ",\n".join(f'"{key}": [\n' + ",\n".join(json.dumps(r) for r in runs) + "\n]"
                           for key, runs in lists.items()) + "}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["one"]:
        print(json.dumps(one(args[1])))
    elif args[:1] == ["held"]:
        _print(held=held(args[1:] or list(HELD)))
    elif args[:1] == ["variant"]:
        print(json.dumps(variant_memory(args[1], args[2])))
    elif args[:1] == ["latency"]:
        print(json.dumps(variant_latency(args[1], args[2].split(","), int(args[3]))))
    elif args[:1] == ["options"]:
        result = options(args[1:])
        _print(session_options_memory=result["memory"], session_options_latency=result["latency"])
    else:
        _print(fresh_process_per_size=[_last_json(["one", size]) for size in args or SIZES])
