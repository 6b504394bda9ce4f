"""Where a fit step's time goes: torch.profiler self time per op, fp32 NCHW eager vs AMP (bf16 autocast
+ channels_last), 256x256, 1 thread, 6 profiled steps after 3 warm-up steps (docs/performance.md).
  python docs/ablation_runs/fit_step_profile.py   (prints a table)"""
import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from tools.bench import _frames, _with_fit
from edge.config import SSDNetConfig
from edge.vgg import build_vgg
from edge.fitter import Fitter
from edge.patches import pad_to_multiple

STEPS = 6


def per_op_ms(cfg: SSDNetConfig, x: torch.Tensor) -> dict[str, float]:
    f = Fitter(cfg, "cpu", build_vgg(cfg))
    x = x.contiguous(memory_format=f.fmt)
    f.fit(x, 3)
    with profile(activities=[ProfilerActivity.CPU]) as p:
        f.fit(x, STEPS)
    return {e.key: e.self_cpu_time_total / 1000 / STEPS for e in p.key_averages()}


def main() -> None:
    torch.set_num_threads(1)
    cfg = SSDNetConfig()
    x = torch.from_numpy(np.stack(_frames(256, 1, seed=1))).permute(0, 3, 1, 2).float() / 255.0
    x = pad_to_multiple(x, cfg.fit.pad_multiple)
    fp32 = per_op_ms(_with_fit(cfg, amp=False, channels_last=False), x)
    amp = per_op_ms(_with_fit(cfg, amp=True), x)
    print(f"{'op (self time per step)':45s} {'fp32 ms':>8s} {'amp ms':>8s} {'ratio':>7s}")
    for op in sorted(set(fp32) | set(amp), key=lambda k: -max(fp32.get(k, 0), amp.get(k, 0)))[:25]:
        a, b = fp32.get(op, 0.0), amp.get(op, 0.0)
        print(f"{op[:45]:45s} {a:8.2f} {b:8.2f} {a / b if b else float('inf'):6.2f}x")
    print(f"{'total':45s} {sum(fp32.values()):8.1f} {sum(amp.values()):8.1f} {sum(fp32.values()) / sum(amp.values()):6.2f}x")


if __name__ == "__main__":
    main()
