"""Device choice and the mixed-precision context for it."""
from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; an explicit 'cuda' without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available (use device: auto or cpu)")
    return torch.device(name)


def autocast_dtype(device: torch.device) -> torch.dtype:
    """The mixed-precision dtype: bf16 on the CPU, fp16 on CUDA."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on the CPU, fp16 on CUDA; a no-op when disabled."""
    if not enabled:
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
