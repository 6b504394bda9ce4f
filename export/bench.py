"""`ssdnet bench-scorer`: per-frame scorer latency of every available backend, in one run.

Every backend scores the same image with the same weights. Two timings per backend and repeat:
`score` (weights unchanged since the last call) and `update+score` (new weights from the fitter,
then a score: what a streaming frame costs). Repeats are interleaved across backends so that load
from other processes hits all of them alike; the table shows medians and the speed-up against
torch eager (fp32, the U-Net in the layout the Fitter leaves it in: what Detector.score ran before
backends existed). Every timing includes copying the map and score to the host.
"""
from __future__ import annotations

import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edge.device import native_mixed_precision, synchronize
from edge.patches import pad_to_multiple
from edge.scorers import CPU_PROVIDER, BackendUnavailable, OnnxRuntimeScorer, TensorRTScorer, TorchScorer, build_scorer
from edge.scorers.onnxruntime_scorer import ort
from edge.scorers.tensorrt_scorer import require_tensorrt
from edge.synthetic import texture


@dataclass
class Row:
    backend: str
    variant: str
    make: Callable | None = None
    device: str = "cpu"
    setup_s: float | None = None
    score_ms: list[float] = field(default_factory=list)
    update_ms: list[float] = field(default_factory=list)
    map_diff: float = 0.0
    score_diff: float = 0.0
    error: str | None = None
    info: dict = field(default_factory=dict)
    scorer: object = None


def _image(height: int, width: int, seed: int) -> torch.Tensor:
    img = texture("brick", max(height, width), np.random.default_rng(seed))[:height, :width]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def _states(unet: torch.nn.Module, n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    base = {k: v.detach().float().contiguous() for k, v in unet.state_dict().items()}
    return [{k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in base.items()} for _ in range(n)]


def _call(row: Row, x: torch.Tensor) -> tuple[np.ndarray, float]:
    amap, score = row.scorer.score(x.to(row.device))
    return amap[0, 0].float().cpu().numpy(), float(score[0])


def build_rows(cfg, scorer, *, compile: bool = False, only: set[str] | None = None) -> list[Row]:
    fit_layout_cl = bool(cfg.fit.amp)
    layout = "channels_last" if fit_layout_cl else "contiguous"
    other = "contiguous" if fit_layout_cl else "channels_last"
    rows = [
        Row("torch", f"eager fp32, {layout} (baseline)",
            lambda: TorchScorer(copy.deepcopy(scorer), channels_last=fit_layout_cl)),
        Row("torch", f"eager fp32, {other}",
            lambda: TorchScorer(copy.deepcopy(scorer), channels_last=not fit_layout_cl)),
        Row("torch", "eager bf16 autocast, channels_last",
            lambda: TorchScorer(copy.deepcopy(scorer), bf16=True, channels_last=True)),
    ]
    if compile:
        rows.append(Row("torch", f"torch.compile fp32, {layout}",
                        lambda: TorchScorer(copy.deepcopy(scorer), channels_last=fit_layout_cl, compile=True)))
    missing: dict[str, str] = {}  # backend -> why it cannot run here, as `ssdnet backends` says
    try:
        providers = ort().get_available_providers()
    except BackendUnavailable as e:
        providers, missing["onnxruntime"] = [], f"{type(e).__name__}: {e}"
    if CPU_PROVIDER in providers:
        for strategy in ("reload", "inputs"):
            rows.append(Row("onnxruntime", f"CPU, weights: {strategy}",
                            lambda s=strategy: OnnxRuntimeScorer(copy.deepcopy(scorer), device="cpu", strategy=s)))
    if "CUDAExecutionProvider" in providers and torch.cuda.is_available():
        rows.append(Row("onnxruntime", "CUDA, weights: inputs",
                        lambda: OnnxRuntimeScorer(copy.deepcopy(scorer).cuda(), device="cuda", strategy="inputs"),
                        "cuda"))
    try:
        require_tensorrt()
    except BackendUnavailable as e:
        missing["tensorrt"] = f"{type(e).__name__}: {e}"
    else:
        for precision in ("fp16", "fp32"):
            for strategy in ("refit", "inputs"):
                rows.append(Row("tensorrt", f"{precision}, weights: {strategy}",
                                lambda p=precision, s=strategy: TensorRTScorer(copy.deepcopy(scorer).cuda(),
                                                                               precision=p, strategy=s),
                                "cuda"))
    if torch.cuda.is_available():
        rows.insert(3, Row("torch", "eager fp32, CUDA", lambda: TorchScorer(copy.deepcopy(scorer).cuda()), "cuda"))
    if only:  # a backend asked for that cannot run here: a failed row, not none
        rows = [r for r in rows if r.backend in only or r is rows[0]]
        rows += [Row(b, "-", error=missing[b]) for b in sorted(only & missing.keys())]
    return rows


def run_bench(cfg, height: int, width: int, repeat: int = 5, *, compile: bool = False, only: set[str] | None = None,
              seed: int = 0, progress: Callable[[str], None] | None = None) -> dict:
    say = progress or (lambda _m: None)
    scorer = build_scorer(cfg, device="cpu", backend="torch").module  # the config's seed init, as in the node
    unet = scorer.unet
    x = pad_to_multiple(_image(height, width, seed), cfg.fit.pad_multiple)
    states = _states(unet, repeat + 1, seed)
    rows = build_rows(cfg, scorer, compile=compile, only=only)
    base = rows[0]

    for row in rows:  # setup: export / build / compile, first call
        if row.error is not None:  # cannot run here
            continue
        say(f"setting up {row.backend}: {row.variant}")
        try:
            t0 = time.perf_counter()
            row.scorer = row.make()
            row.scorer.update_weights(states[0])
            _call(row, x)
            synchronize(torch.device(row.device))
            row.setup_s = time.perf_counter() - t0
            row.info = row.scorer.info()
        except Exception as e:  # noqa: BLE001 - a backend that fails is reported, the others still run
            row.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    live = [r for r in rows if r.error is None]
    if base not in live:
        raise RuntimeError(f"the torch eager baseline failed: {base.error}")
    for i in range(repeat):
        say(f"repeat {i + 1}/{repeat}")
        ref = None
        for row in live:
            try:
                t0 = time.perf_counter()
                row.scorer.update_weights(states[i + 1])
                amap, score = _call(row, x)
                t1 = time.perf_counter()
                _call(row, x)
                t2 = time.perf_counter()
            except Exception as e:  # noqa: BLE001
                row.error = f"{type(e).__name__}: {e}"
                continue
            row.update_ms.append((t1 - t0) * 1000)
            row.score_ms.append((t2 - t1) * 1000)
            if row is base:
                ref = (amap, score)
            else:
                row.map_diff = max(row.map_diff, float(np.abs(amap - ref[0]).max() / (ref[0].std() + 1e-12)))
                row.score_diff = max(row.score_diff, abs(score - ref[1]))
        live = [r for r in live if r.error is None]

    b_score, b_update = statistics.median(base.score_ms), statistics.median(base.update_ms)
    out_rows = []
    for r in rows:
        ok = r.error is None and r.score_ms
        s = statistics.median(r.score_ms) if ok else None
        u = statistics.median(r.update_ms) if ok else None
        out_rows.append({
            "backend": r.backend, "variant": r.variant, "ok": bool(ok), "error": r.error,
            "setup_s": round(r.setup_s, 2) if r.setup_s is not None else None,
            "score_ms": round(s, 1) if ok else None, "update_score_ms": round(u, 1) if ok else None,
            "speedup_score": round(b_score / s, 2) if ok else None,
            "speedup_update_score": round(b_update / u, 2) if ok else None,
            "map_max_abs_diff": r.map_diff if ok else None, "score_abs_diff": r.score_diff if ok else None,
            "info": r.info,
        })
    try:
        ort_version = ort().__version__
    except BackendUnavailable:
        ort_version = None
    return {
        "height": height, "width": width, "padded": list(x.shape[-2:]), "repeat": repeat,
        "config": {"base_channels": cfg.model.base_channels, "scales": list(cfg.fit.scales), "masks": cfg.score.masks,
                   "perceptual_weight": cfg.score.perceptual_weight, "amp": cfg.fit.amp},
        "machine": {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "onnxruntime": ort_version,
                    "native_bf16": native_mixed_precision(x.device.type),
                    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "rows": out_rows,
    }


def render(result: dict) -> None:
    cfgd = result["config"]
    t = Table(title=f"scorer latency per frame, {result['height']}x{result['width']} "
                    f"(padded {result['padded'][0]}x{result['padded'][1]}), "
                    f"base_channels {cfgd['base_channels']}, scales {cfgd['scales']}, masks {cfgd['masks']}, "
                    f"median of {result['repeat']}")
    for col, just in (("backend", "left"), ("variant", "left"), ("setup s", "right"), ("score ms", "right"),
                      ("x eager", "right"), ("update+score ms", "right"), ("x eager", "right"),
                      ("max |Δmap|", "right"), ("|Δscore|", "right")):
        t.add_column(col, justify=just)
    for r in result["rows"]:
        if not r["ok"]:
            t.add_row(r["backend"], r["variant"], "-", "-", "-", "-", "-", "-", f"[red]{escape(r['error'])}[/red]")
            continue
        t.add_row(r["backend"], r["variant"], f"{r['setup_s']:.2f}", f"{r['score_ms']:.1f}",
                  f"{r['speedup_score']:.2f}", f"{r['update_score_ms']:.1f}", f"{r['speedup_update_score']:.2f}",
                  f"{r['map_max_abs_diff']:.2g}", f"{r['score_abs_diff']:.2g}")
    console = Console()
    if not console.is_terminal:  # piped or logged: do not squeeze the table into 80 columns
        console = Console(width=170)
    console.print(t)
    m = result["machine"]
    bf16 = "" if m.get("native_bf16", True) else " No native bf16 here: the bf16 rows run in fp32."
    console.print(f"torch {m['torch']} ({m['torch_threads']} threads), onnxruntime {m['onnxruntime']}, "
                    f"GPU: {m['gpu'] or 'none'}.{bf16} x eager > 1 is faster than torch eager; Δ against the "
                    f"baseline's map (in units of the baseline map's std).")


def write_json(result: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2, default=str) + "\n")
