"""`ssdnet export`, `ssdnet backends` and `ssdnet bench-scorer`."""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edge.args import at_least, check_output_file, no_file_above
from edge.border import has_interior
from edge.config import MIN_SIDE, ConfigError, ScoreConfig, load_config, refuse_without_unet
from edge.detector import first_frame_score
from edge.device import resolve_device
from edge.frames import FrameError, working_size
from edge.scorers import BackendError, BackendUnavailable, TensorRTScorer, build_scorer, choose_backend, probe_backends
from edge.scorers.base import unet_state
from edge.scorers.onnx_graph import DEFAULT_OPSET, DYNAMO_OPSET, ExportError, export_scorer
from edge.synthetic import texture

from .bench import render, run_bench, write_json
from .onnx_export import amend_sidecar, save

EXIT_UNAVAILABLE = 3  # the asked-for backend's runtime (TensorRT, a CUDA GPU) is not on this machine
TORCHSCRIPT_OPSETS = range(13, 24)  # the scorer's ops (aten::unflatten) need 13; torch 2.13's exporter stops at 23
# (outside them it fails after dumping its graph to stdout)

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export the scorer graph to ONNX or a TensorRT engine",
                       description="Export the SSDnet scorer (image -> anomaly map, score) for one camera size. "
                                   "Writes DIR/scorer.onnx (and DIR/scorer.engine for tensorrt) plus DIR/scorer.json.")
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx")
    p.add_argument("--height", type=int, required=True,
                   help="camera frame height (scaled down above ssdnet.max_pixels as the node does, then padded up "
                        "to the scorer's multiple)")
    p.add_argument("--width", type=int, required=True, help="camera frame width (padded likewise)")
    p.add_argument("--fp16", action="store_true", help="run the U-Net in fp16 inside the graph (I/O and map stay fp32)")
    p.add_argument("--config", help="SSDnet YAML config (default: built-in defaults)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default 17; 18 for --exporter dynamo; --format onnx)")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                   help="torch exporter (dynamo needs the onnxscript package; --format onnx)")
    p.add_argument("--weights-as-inputs", action="store_true", help="U-Net weights as graph inputs "
                                                                    "instead of initializers (--format onnx)")
    p.add_argument("--state", help="torch state dict (.pt) of the U-Net to write "
                                   "into the graph (default: the config's seed init)")
    p.add_argument("--max-batch", type=at_least(1), default=1, help="tensorrt: largest batch of the engine's profile")
    p.set_defaults(func=run_export)

    b = sub.add_parser("backends", help="report which scorer backends and providers work on this machine",
                       description="Tries every backend for real on a tiny scorer graph.")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.add_argument("--compile", action="store_true", help="also try torch.compile (slow to compile)")
    b.set_defaults(func=run_backends)

    c = sub.add_parser("bench-scorer", help="per-frame scorer latency of every available backend",
                       description="Times score and weight-update+score per backend against torch eager, in one run.")
    c.add_argument("--height", type=at_least(MIN_SIDE), default=256)
    c.add_argument("--width", type=at_least(MIN_SIDE), default=256)
    c.add_argument("--repeat", type=at_least(1), default=5)
    c.add_argument("--config", help="SSDnet YAML config (default: built-in defaults)")
    c.add_argument("--compile", action="store_true", help="add a torch.compile row (compiling takes about a minute)")
    c.add_argument("--backend", action="append", choices=("torch", "onnxruntime", "tensorrt"),
                   help="only these backends (repeatable; the torch eager baseline always runs)")
    c.add_argument("--json", dest="json_out", help="also write the results to this JSON file")
    c.set_defaults(func=run_bench_cmd)


def _scorer(cfg, state_path: str | None):
    """The AnomalyScorer to export, on the CPU: the config's seed init, or the U-Net weights of `state_path`."""
    scorer = build_scorer(cfg, device="cpu", backend="torch").module
    if state_path:
        _load_state(scorer.unet, state_path, cfg.model.base_channels)
    return scorer


def _load_state(unet: torch.nn.Module, path: str, base_channels: int) -> None:
    """Load `--state PATH` into `unet`; ConfigError (one line; torch's whole error at -v) where it holds no weights
    of this U-Net."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - an image, a text file, a file cut short, a pickle with code in it
        log.debug("torch.load(%r) failed", path, exc_info=True)
        raise ConfigError(f"--state {path} is not a torch state dict ({type(e).__name__} in torch.load; "
                          "-v shows it whole)") from None
    if not isinstance(state, Mapping):
        raise ConfigError(f"--state {path} holds a {type(state).__name__}, not a state dict of U-Net weights")
    state, want = unet_state(state), unet.state_dict()
    bad = sorted(k for k in want.keys() | state.keys()
                 if getattr(state.get(k), "shape", None) != getattr(want.get(k), "shape", None))
    if bad:  # torch's own error names every weight, over many lines
        raise ConfigError(f"--state {path} does not fit this config's U-Net (model.base_channels {base_channels}): "
                          f"{len(bad)} weights missing, unexpected or of another shape "
                          f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''})")
    unet.load_state_dict(state)


def _refuse_bad_args(args: argparse.Namespace, cfg) -> None:
    """ConfigError for flags that would do nothing or fail only after the slow work."""
    unet_flags = [flag for flag, given in (("--fp16", args.fp16 and args.format == "onnx"),
                                           ("--weights-as-inputs", args.weights_as_inputs), ("--state", args.state))
                  if given]  # tensorrt --fp16 still keys the engine the node looks up (score.engine_precision fp16)
    if unet_flags:
        refuse_without_unet(f"{' and '.join(unet_flags)}: for the U-Net", cfg, args.config)
    onnx_only = [flag for flag, given in (("--weights-as-inputs", args.weights_as_inputs),
                                          ("--exporter dynamo", args.exporter == "dynamo"),
                                          (f"--opset {args.opset}", args.opset not in (None, DEFAULT_OPSET)))
                 if given and args.format == "tensorrt"]
    if onnx_only:  # the node looks its engine up by a key these would change: a pre-built engine it never uses
        raise ConfigError(f"{' and '.join(onnx_only)}: for --format onnx; --format tensorrt builds the engine the "
                          f"node builds and looks up in its cache (weights refitted, the torchscript exporter, opset "
                          f"{DEFAULT_OPSET})")
    if args.exporter == "torchscript" and args.opset is not None and args.opset not in TORCHSCRIPT_OPSETS:
        raise ConfigError(f"--opset {args.opset}: the torchscript exporter exports the scorer at opsets "
                          f"{TORCHSCRIPT_OPSETS[0]} to {TORCHSCRIPT_OPSETS[-1]}")
    no_file_above(Path(args.out))


def _inset_alike(frame: tuple[int, int], lo: list[int], hi: list[int], inset: bool) -> list[list[int]]:
    """The sizes lo..hi a graph takes, narrowed toward the camera's `frame` where the first-frame score's inset (when
    there is one) differs from the frame's: 8 px on a frame with an interior, none below (~96 px a side,
    edge.border.has_interior), so the sidecar's one `first_frame_score` is right for every size it names."""
    if inset and has_interior(*frame):
        while not has_interior(*lo):
            lo = [min(lo[0] + 1, frame[0]), min(lo[1] + 1, frame[1])]
    elif inset:
        while has_interior(*hi):
            hi = [max(hi[0] - 1, frame[0]), max(hi[1] - 1, frame[1])]
    return [lo, hi]


def run_export(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.height < MIN_SIDE or args.width < MIN_SIDE:
        print(f"ssdnet export: error: --height and --width must be at least {MIN_SIDE}: the node and `ssdnet score` "
              f"refuse frames under {MIN_SIDE}x{MIN_SIDE} px", file=sys.stderr)
        return 2
    try:
        frame = working_size(args.height, args.width, cfg.max_pixels)  # as the Detector scales a large frame down
    except FrameError as e:
        print(f"ssdnet export: error: {e}", file=sys.stderr)
        return 2
    _refuse_bad_args(args, cfg)
    if frame != (args.height, args.width):
        print(f"frames of {args.height}x{args.width} are scored at {frame[0]}x{frame[1]} "
              f"(ssdnet.max_pixels {cfg.max_pixels})")
    m = cfg.fit.pad_multiple
    h, w = -(-frame[0] // m) * m, -(-frame[1] // m) * m
    if (h, w) != frame:
        print(f"frames of {frame[0]}x{frame[1]} are padded to {h}x{w} (multiples of {m}); exporting for {h}x{w}")
    camera = {"camera": [args.height, args.width], "scored_frame": list(frame),  # the camera's frame as scored
              "frame_sizes": [list(frame), list(frame)], "first_frame_score": first_frame_score(cfg, *frame)}
    console = Console(stderr=True)  # progress: each long step says what it does (tens of seconds on a busy machine)
    console.log("building the scorer")
    scorer = _scorer(cfg, args.state)
    out = Path(args.out)
    opset = args.opset or (DEFAULT_OPSET if args.exporter == "torchscript" else DYNAMO_OPSET)
    if args.format == "onnx":
        sizes = cfg.score.frame_input  # the frame's size an input, as the node's onnxruntime graphs take it
        console.log(f"exporting the scorer graph for {h}x{w} ({args.exporter}, opset {opset}) and checking it")
        try:
            exported = export_scorer(scorer, h, w, opset=opset, fp16=args.fp16,
                                     weights_as_inputs=args.weights_as_inputs, exporter=args.exporter,
                                     frame=None if sizes else frame, frame_input=sizes)
        except ExportError as e:
            print(f"ssdnet export: error: {e}", file=sys.stderr)
            return 2
        if sizes:  # every frame that pads to the input: its size the graph's input `frame` (where it reads it)
            camera["frame_sizes"] = _inset_alike(frame, [max(MIN_SIDE, h - m + 1), max(MIN_SIDE, w - m + 1)], [h, w],
                                                 camera["first_frame_score"]["map"] is not None)
        console.log(f"writing {escape(str(out))}")
        onnx_path, json_path = save(exported, out)
        amend_sidecar(json_path, camera)
        weights = (f"{len(exported.weight_names)} U-Net weights" if cfg.score.uses_unet else
                   "no U-Net weights: score.pixel_weight and perceptual_weight are 0, the default, so nothing is "
                   "fitted")
        (lo_h, lo_w), (hi_h, hi_w) = camera["frame_sizes"]
        scaled = (f" ({args.height}x{args.width} frames scaled down to {frame[0]}x{frame[1]} first)"
                  if frame != (args.height, args.width) else "")
        print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB, opset {exported.opset}, {weights}) "
              f"and {json_path}; it scores frames of {lo_h}x{lo_w} to {hi_h}x{hi_w}{scaled}")
        return 0
    return _export_tensorrt(args, scorer, h, w, frame, out, console, camera)


def _export_tensorrt(args, scorer, h: int, w: int, frame: tuple[int, int], out: Path, console: Console,
                     camera: dict) -> int:
    try:
        trt_scorer = TensorRTScorer(scorer, precision="fp16" if args.fp16 else "fp32", max_batch=args.max_batch)
    except BackendUnavailable as e:  # no TensorRT, or no CUDA GPU: its own exit code, scripts tell it apart
        print(f"ssdnet export: error: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except BackendError as e:
        print(f"ssdnet export: error: {e}", file=sys.stderr)
        return 2
    img = texture("brick", max(h, w), np.random.default_rng(0))[:h, :w]
    x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).float().div(255).cuda()
    console.log(f"building the TensorRT engine for {h}x{w} (or loading it from its cache) and checking its parity")
    try:
        trt_scorer.score(x, frame)  # builds (or loads) the engine and runs the parity gate
    except BackendError as e:
        print(f"ssdnet export: error: {e}", file=sys.stderr)
        return 2
    entry = next(iter(trt_scorer._engines.values()))
    console.log(f"writing {escape(str(out))}")
    onnx_path, json_path = save(entry["exported"], out)
    engine_path = out / "scorer.engine"
    shutil.copyfile(trt_scorer.cache.path(entry["key"]), engine_path)
    amend_sidecar(json_path, {"format": "tensorrt", "engine": engine_path.name, "engine_cache_key": entry["key"],
                               **camera, "max_batch": args.max_batch, "tensorrt": trt_scorer.info()})
    print(f"wrote {engine_path}, {onnx_path} and {json_path}; parity: {trt_scorer.parity}")
    return 0


def _auto_row(results: list[dict], score: ScoreConfig, choice) -> dict | None:
    """The probe's row of what `score.backend: auto` picks here (TensorRT: its `score.engine_precision`)."""
    want = score.engine_precision if choice.backend == "tensorrt" else choice.provider
    return next((r for r in results if r["backend"] == choice.backend and str(r["provider"]).startswith(want)), None)


def run_backends(args: argparse.Namespace) -> int:
    results = probe_backends(include_compile=args.compile)
    score = ScoreConfig()
    auto = choose_backend(score, resolve_device("auto"))
    if args.json:
        picked = _auto_row(results, score, auto)
        for r in results:  # the reason on the row the node's default picks, null on the others
            r["auto"] = auto.reason if r is picked else None
        print(json.dumps(results, indent=2))
    else:
        t = Table(title="scorer backends on this machine (tiny graph, run for real)")
        for col in ("backend", "provider", "works", "ms", "detail"):  # a narrow terminal wraps, never cuts: a
            t.add_column(col, overflow="fold")  # word wider than its column folds (the pip install hint)
        for r in results:
            works = "[green]yes[/green]" if r["ok"] else "[red]no[/red]"
            t.add_row(r["backend"], escape(str(r["provider"] or "-")), works,
                      f"{r['ms']:.1f}" if r["ms"] is not None else "-", escape(r["detail"]))
        Console().print(t)
        Console().print(f"score.backend: auto picks {auto.backend} on {auto.provider} ({escape(auto.reason)})")
    return 0 if any(r["ok"] for r in results) else 1


def run_bench_cmd(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.json_out:
        check_output_file(Path(args.json_out), "--json", "bench.json")
    console = Console(stderr=True)
    result = run_bench(cfg, args.height, args.width, args.repeat, compile=args.compile,
                       only=set(args.backend) if args.backend else None,
                       progress=lambda m: console.log(m))
    render(result)
    if args.json_out:
        write_json(result, args.json_out)
        print(f"wrote {args.json_out}")
    failed = {r["backend"]: r["error"] for r in result["rows"] if r["backend"] in (args.backend or ()) and not r["ok"]}
    if failed:
        print("ssdnet bench-scorer: error: " + "; ".join(f"--backend {b} did not run: {e}" for b, e in failed.items()),
              file=sys.stderr)
        unavailable = all(e.startswith(f"{BackendUnavailable.__name__}:") for e in failed.values())
        return EXIT_UNAVAILABLE if unavailable else 1
    return 0
