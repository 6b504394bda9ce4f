"""Device choice and the mixed-precision context for it."""
from __future__ import annotations

import contextlib
import functools
import logging

import torch

from .config import ConfigError

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; an explicit 'cuda' without a GPU is a ConfigError (a user's
    mistake: its message says what to set)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but this machine has no CUDA GPU (torch sees none; the CPU is "
                          "its only device): set device to auto (the GPU where there is one, else the CPU) or cpu "
                          "(node.ssdnet.device in a line config, device in an SSDnet config, --device for ssdnet eval "
                          "and bench)")
    return torch.device(name)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision dtype: bf16 on the CPU, fp16 on CUDA."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (AVX-512 or AMX on x86, BF16 on Arm); asked once, and warned once
    where it has not."""
    native = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if not native:
        log.warning("this CPU has no native bf16 (torch capability %s): mixed precision (fit.amp, score.amp) runs in "
                    "fp32 instead, ~6x faster than emulated bf16", torch.backends.cpu.get_cpu_capability())
    return native


def native_mixed_precision(device_type: str) -> bool:
    """Whether the device runs its mixed-precision dtype natively: always on CUDA, on the CPU where
    `cpu_has_native_bf16`. Elsewhere bf16 is emulated and a frame costs ~6x fp32's (17.4 vs 2.94 s on an AVX2 CPU,
    docs/performance.md), so mixed precision is skipped there."""
    return device_type != "cpu" or cpu_has_native_bf16()


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on the CPU, fp16 on CUDA; a no-op when disabled or not native (`native_mixed_precision`)."""
    if not enabled or not native_mixed_precision(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=autocast_dtype(device))


def memory_format(device: torch.device, amp: bool, channels_last: bool | None = None) -> torch.memory_format:
    """channels_last pays off on the CPU in any precision (oneDNN) and on CUDA with mixed precision
    (tensor cores); `channels_last` True/False overrides."""
    if channels_last is None:
        channels_last = device.type == "cpu" or amp
    return torch.channels_last if channels_last else torch.contiguous_format


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on the CPU. For timings."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
