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


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on the CPU, fp16 on CUDA; a no-op when disabled."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def memory_format(device: torch.device, amp: bool) -> torch.memory_format:
    """channels_last pays off with mixed precision (oneDNN on the CPU, tensor cores on CUDA)."""
    return torch.channels_last if amp else torch.contiguous_format
