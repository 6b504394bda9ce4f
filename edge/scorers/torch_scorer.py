"""The ``torch`` backend: the AnomalyScorer module itself, eager.

Options: bf16 autocast (fp16 on CUDA; `score.amp`, the default on the CPU), the U-Net's memory
layout, torch.compile (measured slower on the CPU: docs/export.md). It shares the Fitter's U-Net,
so the Detector never pushes weights to it.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..device import autocast, native_mixed_precision
from .base import Scorer, padded_frame, unet_state


class TorchScorer(Scorer):
    """The AnomalyScorer module, eager (optionally bf16 autocast, channels_last, torch.compile)."""

    name = "torch"
    filled_rows_only = True  # a young camera's frame searches its few rows, not the bank's whole allocation

    def __init__(self, module: torch.nn.Module, *, bf16: bool = False, channels_last: bool | None = None,
                 compile: bool = False):
        self.module = module
        self.bf16 = bf16
        self.fp32_reruns = 0  # frames scored again in fp32 because the reduced precision gave inf/NaN
        if channels_last is not None:
            module.unet.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self._fn = torch.compile(module) if compile else module
        self.compiled = compile

    @property
    def device(self) -> torch.device:
        return next(self.module.unet.parameters()).device

    def update_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        state = unet_state(state_dict)
        own = self.module.unet.state_dict()
        if all(k in own and own[k].data_ptr() == v.data_ptr() for k, v in state.items()):
            return  # the module's own tensors: nothing to copy
        with torch.no_grad():
            self.module.unet.load_state_dict(state)

    def score(self, x: torch.Tensor, frame: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        frame = padded_frame(int(x.shape[-2]), int(x.shape[-1]), frame)
        amap, score, memory = self._run(x, self.bf16, frame)
        if self.bf16 and not (torch.isfinite(amap).all() and torch.isfinite(score).all()):
            self.fp32_reruns += 1  # fp16's range overflowed (CUDA: a fitted U-Net, after hundreds of frames)
            amap, score, memory = self._run(x, False, frame)
        self.keep_memory_outputs(tuple(memory))
        return amap.float(), score.float()

    def _run(self, x: torch.Tensor, reduced: bool, frame: tuple[int, int] | None
             ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        with torch.no_grad() if self.compiled else torch.inference_mode():
            with autocast(x.device, reduced):  # bf16 on the CPU, fp16 on CUDA
                amap, score, *memory = self._fn(x, *self.memory_inputs(x.device), frame=frame)
        return amap, score, memory

    def info(self) -> dict:
        first_conv = self.module.unet.enc[0][0].weight
        bf16 = self.bf16 and native_mixed_precision(first_conv.device.type)  # emulated bf16 is skipped
        return {"backend": self.name, "bf16": bf16, "compile": self.compiled, "fp32_reruns": self.fp32_reruns,
                "channels_last": first_conv.is_contiguous(memory_format=torch.channels_last)}
