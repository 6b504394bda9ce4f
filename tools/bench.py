"""`ssdnet bench`: where the time of one streaming frame goes, measured in one run.

Sections (each failure is reported as "n/a: <reason>", the others still run):
- fit step: one optimiser step of the Fitter (corrupt, U-Net, VGG19 loss, backward, Adam), fp32
  eager (PyTorch's default NCHW layout: the baseline) vs fp32 channels_last (the layout alone) vs
  mixed precision (bf16 autocast + channels_last on the CPU, fp16 on CUDA), eager vs torch.compile
  (U-Net and VGG forwards compiled; with --compile, which takes minutes on a CPU), and on CUDA the
  whole step captured in a CUDA graph. Variants run in interleaved rounds so load from other
  processes hits them alike; medians of step times.
- scorer: per-frame scorer latency per backend, with and without a weight update (export.bench),
  every variant side by side (torch fp32 / bf16, ONNX Runtime with the weights bound as graph
  inputs, its default, or reloaded into a new session, TensorRT where present), and the backend
  that `score.backend: auto` picks on this machine.
- pipeline: a real line (synthetic camera -> node -> collector, spawned processes, tcp 127.0.0.1)
  against the node's compute alone (Detector.process on the same synthetic frames, in-process, no
  sockets); frames/s of both and latency percentiles per stage. The camera is unpaced and the
  node's queue holds every frame, so both score exactly the same frames; `queue` and `end_to_end`
  latencies therefore include the backlog, the other stages are per-frame service times.
- transport: raw 1920x1080x3 uint8 frames/s through the project's protocol (header + encode + send
  + recv + validated decode) against a bare pyzmq zero-copy send/recv of the same bytes, PUSH/PULL
  over tcp 127.0.0.1, interleaved rounds.
- frame: one warm streaming frame (Detector.process: score, warm fit, memory, calibration) of this
  config next to the previous default (PREVIOUS_DEFAULT), interleaved; fit, score and whole-frame ms.
- memory: how a frame's time and the memory search grow with the per-camera memory size (0 = off).
- flops: FLOPs of one fit step and one scoring pass (torch.utils.flop_counter), for the GPU
  estimates in docs/performance.md.
- peak memory: max RSS of this process and of the line's child processes; CUDA max allocated.

Use `--threads` no larger than the cores free: oversubscribed torch threads slow fitting 10-60x.
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import platform
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import zmq
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edge.args import at_least
from edge.border import band_stats
from edge.config import MIN_SIDE, SSDNetConfig, load_config, parse_config
from edge.detector import Detector
from edge.device import native_mixed_precision, resolve_device, synchronize
from edge.fitter import Fitter, image_to_tensor
from edge.memory import FeatureMemory, grid_shape, memory_distance
from edge.patches import pad_to_multiple
from edge.scorers import BACKENDS, choose_backend
from edge.sizes import feature_dim
from edge.synthetic import TEXTURES, sample
from edge.vgg import build_vgg
from export.bench import run_bench
from pipeline import protocol as P
from pipeline.config import LineConfig
from pipeline.launcher import run_line
from pipeline.sinks import counted
from pipeline.sources import SyntheticReader
from pipeline.stats import percentiles
from pipeline.transport import bind, make_socket

TRANSPORT_SHAPE = (1080, 1920, 3)
SCORER_ROW_KEYS = ("backend", "variant", "ok", "error", "score_ms", "update_score_ms", "setup_s")
# export.bench variants that the node runs by default (ONNX Runtime: new weights bound, never a new session)
DEFAULT_VARIANTS = {"eager bf16 autocast, channels_last": "the torch backend's default (score.amp)",
                    "CPU, weights: inputs": "ONNX Runtime's default: weights bound per frame, one session",
                    "CPU, weights: reload": "option: a new session per weight update",
                    "CUDA, weights: inputs": "ONNX Runtime's default on CUDA"}


def _na(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"n/a: {type(e).__name__}: {text[:200]}"


def _with_fit(cfg, **fit):
    return cfg.model_copy(update={"fit": cfg.fit.model_copy(update=fit)})


def _frames(size: int, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    names = list(TEXTURES)
    return [sample(names[i % len(names)], size, rng, 0.5)[0] for i in range(n)]


# ------------------------------------------------------------------ fit step


class _FitVariant:
    def __init__(self, name: str, cfg, device: torch.device, vgg, x: torch.Tensor, compile: bool = False):
        self.name, self.error, self.times, self.setup_s = name, None, [], None
        try:
            t0 = time.perf_counter()
            self.fitter = Fitter(cfg, device, vgg)
            self.x = x.to(device).contiguous(memory_format=self.fitter.fmt)
            if compile:
                self.fitter.model.forward = torch.compile(self.fitter.model.forward)
                if self.fitter.vgg is not None:
                    self.fitter.vgg.forward = torch.compile(self.fitter.vgg.forward)
            self.fitter.fit(self.x, 2)  # warm-up (and compilation)
            synchronize(device)
            self.setup_s = time.perf_counter() - t0
        except Exception as e:  # noqa: BLE001 - reported as n/a
            self.error = _na(e)

    def run(self, steps: int) -> None:
        if self.error:
            return
        marks = [time.perf_counter()]
        try:
            self.fitter.fit(self.x, steps, progress=lambda *_: marks.append(time.perf_counter()))
        except Exception as e:  # noqa: BLE001
            self.error = _na(e)
            return
        self.times += [(b - a) * 1000 for a, b in itertools.pairwise(marks)]

    def result(self, batch: int) -> dict | str:
        if self.error:
            return self.error
        ms = statistics.median(self.times)
        return {"ms": round(ms, 2), "ms_per_image": round(ms / batch, 2),
                "p95_ms": round(float(np.percentile(self.times, 95)), 2), "steps": len(self.times),
                "setup_s": round(self.setup_s, 2)}


def _cuda_graph_step(cfg, vgg, x: torch.Tensor, steps: int) -> dict | str:
    """One whole fit step (corrupt, forward, loss, backward, Adam) replayed from a CUDA graph.

    Needs a static input, a capturable Adam, the fitter's generator registered with the graph, and no
    GradScaler (its inf check syncs with the host), so it runs fp16-free: bf16 autocast or fp32."""
    if not torch.cuda.is_available():
        return "n/a: no CUDA device"
    try:
        f = Fitter(_with_fit(cfg, amp=False, channels_last=cfg.fit.amp), "cuda", vgg)  # bf16 autocast below
        f.optimizer = torch.optim.Adam(f.model.parameters(), lr=cfg.fit.lr, capturable=True)
        grids = f.patch_grids(x.cuda())
        f.model.train()

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.fit.amp):
                loss = f.step_loss(grids)
            f.optimizer.zero_grad(set_to_none=False)
            loss.backward()
            f.optimizer.step()
            return loss

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(f.generator)
        with torch.cuda.graph(graph):
            step()
        graph.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            graph.replay()
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1000)
        return {"ms": round(statistics.median(times), 3), "steps": steps}
    except Exception as e:  # noqa: BLE001
        return _na(e)


def bench_fit(cfg, size: int, batch: int, steps: int, *, compile: bool, device: torch.device, rounds: int = 3,
              say=lambda _m: None) -> dict:
    vgg = build_vgg(cfg)
    imgs = _frames(size, batch, seed=1)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    x = pad_to_multiple(x, cfg.fit.pad_multiple)
    fp32 = _with_fit(cfg, amp=False, channels_last=False)  # fp32 eager: PyTorch's default layout, the baseline
    variants = [("fp32", fp32, False), ("fp32_channels_last", _with_fit(cfg, amp=False, channels_last=True), False),
                ("amp", _with_fit(cfg, amp=True), False)]
    if compile:
        variants += [("compile_fp32", fp32, True), ("compile_amp", _with_fit(cfg, amp=True), True)]
    runs = []
    for name, c, comp in variants:
        say(f"fit step: setting up {name}")  # each its own VGG19: a Fitter converts the trunk's layout and dtype
        runs.append(_FitVariant(name, c, device, copy.deepcopy(vgg), x, compile=comp))
    per_round = max(1, math.ceil(steps / rounds))
    for r in range(rounds):
        say(f"fit step: round {r + 1}/{rounds}")
        for v in runs:
            v.run(per_round)
    out = {v.name: v.result(batch) for v in runs}
    if not compile:
        out["compile_fp32"] = out["compile_amp"] = ("n/a: not run (pass --compile; compiling the fit step's U-Net and "
                                                    "VGG takes minutes on a small CPU)")
    say("fit step: CUDA graph")
    out["cuda_graph"] = _cuda_graph_step(_with_fit(cfg, amp=cfg.fit.amp), vgg, x, steps)
    return out


# ------------------------------------------------------------------ frame and memory

# the self-similarity's scale before docs/ablations.md section 38: the input enlarged 2x, 4 px cells, 32 px excluded
SECTION37_SCALE = {"knn_upscale": 2, "knn_cell": 4, "knn_radius": 8}
# the default before issue 13: the fitted reconstruction maps on, no memory, the self-similarity at SECTION37_SCALE
PREVIOUS_DEFAULT = {"memory": {"size_mb": 0},
                    "score": {"pixel_weight": 0.1, "perceptual_weight": 0.1, **SECTION37_SCALE},
                    "border": {"enabled": False}, "calibration": {"hold_out_z": None}}
MEMORY_SIZES_MB = (0, 4, 16, 64)


def _config_with(cfg, overrides: dict):
    data = cfg.model_dump(mode="json")
    for section, values in overrides.items():
        data[section] = {**data[section], **values} if isinstance(values, dict) else values
    return parse_config(SSDNetConfig, data)


def fill_bank(memory: FeatureMemory | None, seed: int = 0) -> None:
    """Fill a memory bank (a detector's `memory`; None: no memory, nothing to fill) with random unit rows: a camera
    past its first few hundred frames, whose search covers every row (the scorers search the filled rows alone)."""
    if memory is not None:
        rows = torch.randn(memory.bank.shape, generator=torch.Generator().manual_seed(seed))
        memory.bank.copy_(torch.nn.functional.normalize(rows, dim=1).to(memory.bank))
        memory.count = len(memory.bank)


def _warm_frame_ms(variants: dict[str, Detector], images: list[np.ndarray], full_bank: bool = True
                   ) -> dict[str, dict]:
    """Every detector takes its cold first frame, then the rest in interleaved rounds (load hits all alike); its
    border profile is filled from the first frame's map, so the correction of a camera past its 16th normal frame
    is in the time, and (`full_bank`) its memory bank is full, as a camera's is after its first few hundred
    frames."""
    times: dict[str, dict[str, list[float]]] = {n: {"frame": [], "fit": [], "score": []} for n in variants}
    for det in variants.values():
        if full_bank:
            fill_bank(det.memory)
        d = det.process(images[0])
        if det.border is not None:
            det.border.frames.extend([band_stats(d.anomaly_map)] * det.border.cfg.min_frames)
    for image in images[1:]:
        for name, det in variants.items():
            t0 = time.perf_counter()
            d = det.process(image)
            times[name]["frame"].append((time.perf_counter() - t0) * 1000)
            times[name]["fit"].append(d.fit_ms)
            times[name]["score"].append(d.score_ms)
    return {n: {f"{k}_ms": round(statistics.median(v), 1) for k, v in t.items()} for n, t in times.items()}


def bench_frame(cfg, size: int, frames: int) -> dict:
    """This config's warm frame against the previous default's, side by side in one run."""
    images = _frames(size, max(frames, 2) + 1, seed=3)
    variants = {"config": Detector(cfg), "previous default": Detector(_config_with(cfg, PREVIOUS_DEFAULT))}
    out = _warm_frame_ms(variants, images)
    for name, det in variants.items():
        out[name]["bank_rows"] = det.memory.count if det.memory is not None else 0
    out["ratio"] = round(out["config"]["frame_ms"] / out["previous default"]["frame_ms"], 3)
    out["previous_default"] = PREVIOUS_DEFAULT
    return out


def bench_memory(cfg, size: int, frames: int, sizes_mb=MEMORY_SIZES_MB) -> dict:
    """Per size: bank rows and MB, one memory search (a frame's cells against the whole bank), one write of
    a frame's cells into the full bank (with the cell selection of `memory.candidates`) and a warm frame of this
    config with that memory size."""
    images = _frames(size, max(frames, 2) + 1, seed=4)
    rows = {}
    dets = {mb: Detector(_config_with(cfg, {"memory": {"size_mb": float(mb)}})) for mb in sizes_mb}
    frame = _warm_frame_ms({str(mb): d for mb, d in dets.items()}, images)
    for mb, det in dets.items():
        row = {"mb": mb, **frame[str(mb)], "rows": 0, "search_ms": 0.0, "add_ms": 0.0}
        if det.memory is not None:
            mcfg = det.memory.cfg
            feats = torch.randn(1, feature_dim(mcfg), *grid_shape(size, size, mcfg))
            memory = FeatureMemory(mcfg)
            memory.count = len(memory.bank)  # full: a search over every row, a write that overwrites
            count, everywhere = torch.tensor([1e9]), torch.ones(feats.shape[-2:], dtype=torch.bool)
            ts, adds = [], []
            for _ in range(5):
                t0 = time.perf_counter()
                dist, _ = memory_distance(feats, memory.bank, count, mcfg.k)
                t1 = time.perf_counter()
                memory.add(feats, everywhere, dist[0, 0])
                ts.append((t1 - t0) * 1000)
                adds.append((time.perf_counter() - t1) * 1000)
            row.update(rows=len(memory.bank), bytes=det.memory.nbytes, search_ms=round(statistics.median(ts), 1),
                       add_ms=round(statistics.median(adds), 1))
        rows[str(mb)] = row
    return rows


# ------------------------------------------------------------------ scorer


def bench_scorer(cfg, size: int, repeat: int, backends: set[str] | None, say=lambda _m: None) -> dict:
    result = run_bench(cfg, size, size, repeat, only=backends, progress=say)
    best: dict[str, dict] = {}
    for row in result["rows"]:
        if not row["ok"]:
            continue
        if row["backend"] not in best or row["update_score_ms"] < best[row["backend"]]["update_score_ms"]:
            best[row["backend"]] = row
    return {"scorer_ms": {b: r["update_score_ms"] for b, r in best.items()},
            "scorer_ms_no_update": {b: r["score_ms"] for b, r in best.items()},
            "scorer_variant": {b: r["variant"] for b, r in best.items()},
            "scorer_rows": [{k: r[k] for k in SCORER_ROW_KEYS} for r in result["rows"]],
            "scorer_auto": choose_backend(cfg.score.model_copy(update={"backend": "auto"}),
                                          resolve_device(cfg.device)).as_dict()}


# ------------------------------------------------------------------ pipeline


def _line_config(cfg, size: int, frames: int, threads: int):
    return parse_config(LineConfig, {
        "sources": [{"name": "cam0", "kind": "synthetic", "size": size, "frames": frames, "seed": 7,
                     "textures": ["brick", "grass", "gravel"], "sndhwm": frames + 8}],
        # threshold -1e9: every frame is an event, so events.jsonl holds every frame's stage stamps
        "node": {"threads": threads, "queue_depth": frames + 1, "attach_image": "never", "threshold": -1e9,
                 "ssdnet": cfg.model_dump(mode="json")},
        "sinks": {"overlays": False, "scores": True},  # every result with its delivery time: the steady rate
    })


def _node_alone(line_cfg, frames: int) -> dict:
    """Detector.process on the frames the line's camera sends, in this process, no sockets."""
    reader = SyntheticReader(line_cfg.sources[0])
    images = [reader.read().image for _ in range(frames)]
    ssd = line_cfg.node.ssdnet
    vgg = build_vgg(ssd)  # built before the line's first frame there too
    t0 = time.perf_counter()
    det = Detector(ssd, vgg=vgg)
    lat = []
    for img in images:
        t = time.perf_counter()
        det.process(img)
        lat.append((time.perf_counter() - t) * 1000)
    total = time.perf_counter() - t0
    warm = lat[1:]
    return {"fps_with_startup": frames / total, "fps": len(warm) / (sum(warm) / 1000) if warm else frames / total,
            "frame_ms": lat}


def bench_pipeline(cfg, size: int, frames: int, threads: int, say=lambda _m: None) -> dict:
    line_cfg = _line_config(cfg, size, frames, threads)
    say(f"pipeline: node alone, {frames} frames")
    alone = _node_alone(line_cfg, frames)
    say(f"pipeline: real line, {frames} frames")
    with tempfile.TemporaryDirectory() as out:
        summary = run_line(line_cfg, out, timeout_s=600)
        scores = Path(out) / "scores.jsonl"
        results = [json.loads(x) for x in scores.read_text().splitlines() if x.strip()] if scores.is_file() else []
    if not summary.get("fps") or summary["frames"] != frames:
        raise RuntimeError(f"the line scored {summary['frames']} of {frames} "
                           f"frames (timed out: {summary['timed_out']})")
    # steady state: the rate at which results reach the collector after the first (cold) frame's, against
    # the node alone's warm frames; with start-up: the launcher's fps (first frame at the node -> last delivery,
    # including the spawned node's first-frame costs) against the node alone's whole run. Every result counts
    # (scores.jsonl), not only the events: a run with fewer than two events read its start-up rate as steady
    delivered = sorted(r["t_capture"] + r["end_to_end_ms"] / 1000 for r in results
                       if r.get("end_to_end_ms") is not None)
    fps = (len(delivered) - 1) / (delivered[-1] - delivered[0]) if len(delivered) >= 2 else summary["fps"]
    node_fps = alone["fps"]
    return {"fps": round(fps, 4), "node_fps": round(node_fps, 4), "ratio": round(fps / node_fps, 3),
            "fps_with_startup": summary["fps"], "node_fps_with_startup": round(alone["fps_with_startup"], 4),
            "ratio_with_startup": round(summary["fps"] / alone["fps_with_startup"], 3), "frames": frames,
            "size": size, "cold_steps": cfg.fit.steps, "warm_steps": cfg.fit.warm_steps,
            "latency_ms": summary["latency_ms"],
            "node_frame_ms": percentiles(alone["frame_ms"][1:] or alone["frame_ms"]),
            "node_cold_frame_ms": round(alone["frame_ms"][0], 2), "dropped": summary["dropped"],
            "scorer": summary["scorer"]}


# ------------------------------------------------------------------ transport


def _transport_round(ctx, frame: np.ndarray, n: int, project: bool) -> float:
    mk = (lambda kind: make_socket(ctx, kind)) if project else ctx.socket
    pull, push = mk(zmq.PULL), mk(zmq.PUSH)
    for s in (pull, push):
        s.setsockopt(zmq.LINGER, 0)
    push.connect(bind(pull, "tcp://127.0.0.1:*"))
    desc = P.describe("image", frame)

    def sender():
        for i in range(n + 2):
            if project:
                header = P.FrameHeader(kind="frame", source="cam0", seq=i, t_capture=time.time(),
                                       stamps={"capture": time.time()}, payloads=(desc,))
                P.send(push, P.Message(header, {"image": frame}))
            else:
                push.send(frame, copy=False)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    try:
        for i in range(n + 2):
            if i == 2:  # two warm-up frames: connection set up, buffers allocated
                t0 = time.perf_counter()
            if project:
                msg = P.decode(pull.recv_multipart(copy=False))
                assert msg.arrays["image"].shape == frame.shape
            else:
                buf = pull.recv(copy=False)
                assert len(buf) == frame.nbytes
        dt = time.perf_counter() - t0
    finally:
        th.join(timeout=10)
        pull.close()
        push.close()
    return n / dt


def bench_transport(frames: int, rounds: int = 15, shape: tuple[int, int, int] = TRANSPORT_SHAPE) -> dict:
    """Rounds of the two loops back to back, alternating which goes first. `ratio` is the median over
    rounds of project / bare within a round (load that changes slowly cancels out); `best_ratio`
    compares the best rounds of each, `median_ratio` the medians."""
    ctx = zmq.Context()
    frame = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    project, bare = [], []
    try:
        for r in range(rounds):
            for proj in ((True, False) if r % 2 == 0 else (False, True)):
                (project if proj else bare).append(_transport_round(ctx, frame, frames, proj))
    finally:
        ctx.term()
    p, b = max(project), max(bare)
    desc, reps = P.describe("image", frame), 200
    t0 = time.perf_counter()
    for i in range(reps):  # the protocol's own CPU cost per frame, no sockets
        header = P.FrameHeader(kind="frame", source="cam0", seq=i, t_capture=time.time(), payloads=(desc,))
        parts = P.encode(P.Message(header, {"image": frame}))
    t1 = time.perf_counter()
    for _ in range(reps):
        P.decode(parts)
    t2 = time.perf_counter()
    return {"project_fps": round(p, 2), "bare_fps": round(b, 2),
            "ratio": round(statistics.median(x / y for x, y in zip(project, bare, strict=True)), 3),
            "best_ratio": round(p / b, 3),
            "median_ratio": round(statistics.median(project) / statistics.median(bare), 3),
            "protocol_encode_us": round((t1 - t0) / reps * 1e6, 1),
            "protocol_decode_us": round((t2 - t1) / reps * 1e6, 1),
            "frame": "x".join(map(str, shape)), "frames_per_round": frames, "rounds": rounds,
            "project_gbit_s": round(p * frame.nbytes * 8 / 1e9, 2)}


# ------------------------------------------------------------------ flops, memory


def count_flops(cfg, size: int) -> dict:
    """FLOPs of one fit step (forward + backward, VGG loss included) and one scoring pass at size x size."""
    # imported here: the flop counter pulls in torch internals that no other section (nor `ssdnet --help`) needs
    from torch.utils.flop_counter import FlopCounterMode

    det = Detector(cfg.model_copy(update={"device": "cpu"}), device="cpu")
    x = image_to_tensor(_frames(size, 1, seed=2)[0], det.device, det.fitter.multiple)
    with FlopCounterMode(display=False) as fc:
        det.fitter.fit(x, 1)
    fit = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        det.score(x, size, size)
    return {"fit_step": int(fit), "score": int(fc.get_total_flops()), "size": size}


def peak_memory() -> dict:
    scale = 1024 if platform.system() == "Linux" else 1024 * 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    out = {"self_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, 1),
           "children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / scale, 1)}
    if torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


# ------------------------------------------------------------------ the command


def run(cfg, *, size: int = 256, batch: int = 1, steps: int = 6, backends: set[str] | None = None, threads: int = 1,
        frames: int = 6, transport_frames: int = 100, repeat: int = 3, compile: bool = False,
        sections: tuple[str, ...] = ("fit", "scorer", "frame", "memory", "pipeline", "transport", "flops"),
        say=lambda _m: None) -> dict:
    torch.set_num_threads(threads)
    device = resolve_device(cfg.device)  # an explicit cuda without a GPU: a ConfigError, not a CPU run that fails late
    result: dict = {"config": {"size": size, "batch": batch, "steps": steps, "threads": threads, "frames": frames,
                               "base_channels": cfg.model.base_channels, "scales": list(cfg.fit.scales),
                               "cold_steps": cfg.fit.steps, "warm_steps": cfg.fit.warm_steps,
                               "score_masks": cfg.score.masks, "perceptual_weight": cfg.loss.perceptual_weight},
                    "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                                "torch_threads": torch.get_num_threads(), "device": str(device),
                                "native_bf16": native_mixed_precision(device.type),
                                "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
                    "errors": {}}

    def section(name, fn):
        if name not in sections:
            return None
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - one failing section does not lose the others
            result["errors"][name] = _na(e)
            value = None
        result.setdefault("section_s", {})[name] = round(time.perf_counter() - t0, 1)
        return value

    fit = section("fit", lambda: bench_fit(cfg, size, batch, steps, compile=compile, device=device, say=say))
    if fit is not None:
        result["fit_step_ms"] = {k: v["ms"] for k, v in fit.items()
                                 if isinstance(v, dict) and k in ("fp32", "fp32_channels_last", "amp")}
        result["fit_step"] = fit
    sc = section("scorer", lambda: bench_scorer(cfg, size, repeat, backends, say=say))
    if sc is not None:
        result.update(sc)
    fr = section("frame", lambda: bench_frame(cfg, size, frames))
    if fr is not None:
        result["frame"] = fr
    mem_rows = section("memory", lambda: bench_memory(cfg, size, frames))
    if mem_rows is not None:
        result["memory_sizes"] = mem_rows
    line_cfg = _with_fit(cfg, steps=min(cfg.fit.steps, max(steps, cfg.fit.warm_steps)))
    line = section("pipeline", lambda: bench_pipeline(line_cfg, size, frames, threads, say=say))
    if line is not None:
        result["pipeline"] = line
    tr = section("transport", lambda: bench_transport(transport_frames))
    if tr is not None:
        result["transport"] = tr
    fl = section("flops", lambda: count_flops(cfg, size))
    if fl is not None:
        result["flops"] = fl
    mem = peak_memory()
    result["peak_rss_mb"] = mem["self_mb"]
    result["memory"] = mem
    return result


def render(result: dict) -> None:
    c = result["config"]
    t = Table(title=f"ssdnet bench: {c['size']}x{c['size']}, batch {c['batch']}, base_channels {c['base_channels']}, "
                    f"scales {c['scales']}, {counted(c['threads'], 'torch thread')}, {result['machine']['device']}"
                    + ("" if result["machine"].get("native_bf16", True) else " without native bf16: amp runs fp32"))
    for col, just in (("section", "left"), ("what", "left"), ("value", "right"), ("vs", "right"), ("note", "left")):
        t.add_column(col, justify=just)
    fit = result.get("fit_step", {})
    base = fit.get("fp32", {}).get("ms") if isinstance(fit.get("fp32"), dict) else None
    for name, v in fit.items():
        if isinstance(v, dict):
            rel = f"{base / v['ms']:.2f}x fp32" if base and name != "cuda_graph" else ""
            note = f"p95 {v.get('p95_ms', '-')} ms, {v['steps']} steps, setup {v.get('setup_s', '-')} s"
            if name == "amp" and isinstance(fit.get("fp32_channels_last"), dict):
                note += f"; {fit['fp32_channels_last']['ms'] / v['ms']:.2f}x fp32_channels_last (the dtype alone)"
            t.add_row("fit step", name, f"{v['ms']:.1f} ms", rel, note)
        else:
            t.add_row("fit step", name, "n/a", "", escape(str(v)))
    tb = result.get("scorer_ms", {}).get("torch")
    for r in result.get("scorer_rows", []):  # every variant: the ONNX Runtime weight strategies side by side
        if not r["ok"]:
            t.add_row("scorer", r["backend"], "n/a", "", escape(f"{r['variant']}: {r['error']}"))
            continue
        ms = r["update_score_ms"]
        notes = [f"score only {r['score_ms']:.1f} ms", f"setup {r['setup_s']} s"]
        if result["scorer_variant"].get(r["backend"]) == r["variant"]:
            notes.append(f"best {r['backend']}")
        if r["variant"] in DEFAULT_VARIANTS:
            notes.append(DEFAULT_VARIANTS[r["variant"]])
        t.add_row("scorer", escape(f"{r['backend']}: {r['variant']}, update+score"), f"{ms:.1f} ms",
                  f"{tb / ms:.2f}x torch" if tb else "", "; ".join(notes))
    if auto := result.get("scorer_auto"):
        t.add_row("scorer", "score.backend: auto picks", f"{auto['backend']} ({auto['provider']})", "",
                  escape(auto["reason"]))
    if fr := result.get("frame"):
        for name in ("config", "previous default"):
            v = fr[name]
            t.add_row("frame", f"warm frame, {name}", f"{v['frame_ms']:.0f} ms",
                      f"{fr['ratio']:.2f}x previous" if name == "config" else "",
                      f"fit {v['fit_ms']:.0f} ms, score {v['score_ms']:.0f} ms (medians, interleaved; "
                      + (f"memory bank full, {v['bank_rows']} rows)" if v.get("bank_rows") else "no memory)")
                      + (f"; previous = this config with {fr['previous_default']}" if name != "config" else ""))
    for mb, v in result.get("memory_sizes", {}).items():
        t.add_row("memory", f"{mb} MB per camera" + (" (off)" if not float(mb) else ""), f"{v['frame_ms']:.0f} ms",
                  "", f"{v['rows']} rows; search {v['search_ms']:.1f} ms, write {v['add_ms']:.1f} ms; "
                      f"score {v['score_ms']:.0f} ms, fit {v['fit_ms']:.0f} ms per warm frame")
    if p := result.get("pipeline"):
        t.add_row("pipeline", "line fps, steady", f"{p['fps']:.3g}", f"{p['ratio']:.2f}x node",
                  "target >= 0.9x; after the cold first frame")
        t.add_row("pipeline", "node alone fps, steady", f"{p['node_fps']:.3g}", "",
                  f"Detector.process, same {p['frames']} frames, no sockets")
        t.add_row("pipeline", "line fps, with start-up", f"{p['fps_with_startup']:.3g}",
                  f"{p['ratio_with_startup']:.2f}x node", "first frame at the node -> last delivery, fresh node")
        for stage, q in p["latency_ms"].items():
            if q:
                t.add_row("pipeline", f"latency {stage}", f"{q['p50']:.1f} ms", "",
                          f"p95 {q['p95']:.1f}, p99 {q['p99']:.1f} ms")
        if q := p.get("node_frame_ms"):
            t.add_row("pipeline", "node alone warm frame", f"{q['p50']:.1f} ms", "",
                      f"p95 {q['p95']:.1f}, p99 {q['p99']:.1f} ms")
    if tr := result.get("transport"):
        t.add_row("transport", f"protocol fps ({tr['frame']})", f"{tr['project_fps']:.1f}", f"{tr['ratio']:.2f}x bare",
                  f"target >= 0.9x; median of {tr['rounds']} paired rounds (best vs best {tr['best_ratio']:.2f}x); "
                  f"protocol CPU {tr['protocol_encode_us']} + {tr['protocol_decode_us']} us/frame; "
                  f"{tr['project_gbit_s']} Gbit/s")
        t.add_row("transport", "bare pyzmq fps", f"{tr['bare_fps']:.1f}", "",
                  "zero-copy PUSH/PULL, tcp 127.0.0.1, best round")
    if fl := result.get("flops"):
        t.add_row("flops", "fit step", f"{fl['fit_step'] / 1e9:.1f} GFLOP", "",
                  f"{fl['size']}x{fl['size']}, forward + backward")
        t.add_row("flops", "scoring pass", f"{fl['score'] / 1e9:.1f} GFLOP", "", "")
    m = result["memory"]
    t.add_row("memory", "peak RSS", f"{m['self_mb']:.0f} MB", "", f"line children max {m['children_mb']:.0f} MB"
              + (f", CUDA max allocated {m['cuda_max_allocated_mb']:.0f} MB" if "cuda_max_allocated_mb" in m else ""))
    for name, err in result["errors"].items():
        t.add_row(name, "failed", "n/a", "", escape(err))
    console = Console()
    if not console.is_terminal:
        console = Console(width=170)
    console.print(t)


def _main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.device:
        cfg = cfg.model_copy(update={"device": args.device})
    q = args.quick
    size = args.size or (64 if q else 256)
    steps = args.steps or (2 if q else 6)
    frames = args.frames or (3 if q else 6)
    backends = args.backends or ({"torch"} if q else None)
    if q:
        cfg = _with_fit(cfg, steps=min(cfg.fit.steps, 3), warm_steps=min(cfg.fit.warm_steps, 2))
    console = Console(stderr=True)
    result = run(cfg, size=size, batch=args.batch, steps=steps, backends=backends, threads=args.threads, frames=frames,
                 transport_frames=args.transport_frames or (8 if q else 60), repeat=2 if q else 3,
                 compile=args.compile and not q, say=lambda m: console.log(m))
    render(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    return 0 if not result["errors"] else 1



def _backends(text: str) -> set[str]:
    """An argparse `type`: comma-separated scorer backends, each one of BACKENDS."""
    names = {n.strip() for n in text.split(",")} - {""}
    unknown = sorted(names - set(BACKENDS)) if names else [text]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend {unknown[0]!r}: give some of {', '.join(BACKENDS)}")
    return names


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="fit step, scorer, pipeline, transport and memory benchmark in one run",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="SSDnet YAML config, or a line config (its node.ssdnet); default: built-in "
                                    "defaults")
    p.add_argument("--size", type=at_least(MIN_SIDE), help="frame side for fit, scorer, pipeline and FLOPs (default "
                                                             "256; --quick 64)")
    p.add_argument("--batch", type=at_least(1), default=1, help="images per fit step (default 1)")
    p.add_argument("--steps", type=at_least(1), help="timed fit steps per variant (default 6; --quick 2)")
    p.add_argument("--frames", type=at_least(1), help="frames through the line and the node alone (default 6; "
                                                      "--quick 3)")
    p.add_argument("--transport-frames", type=at_least(1), help="1080p frames per transport round, 15 "
                                                        "rounds each (default 60; --quick 8)")
    p.add_argument("--backends", type=_backends, help="comma-separated scorer backends "
                                      "(torch,onnxruntime,tensorrt; default all available, "
                                      "with --quick torch only)")
    p.add_argument("--threads", type=at_least(1), default=1, help="torch threads here and in the node (default 1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="override the config's device")
    p.add_argument("--compile", action="store_true", help="add torch.compile fit-step variants "
                                                          "(compiling takes minutes on a CPU)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--quick", action="store_true", help="CI-size run: tiny frames, few steps, no torch.compile")
    p.set_defaults(func=_main)
