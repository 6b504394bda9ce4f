"""The SSDnet reconstruction network: a U-Net with 3 down, 3 up, skips and a global residual."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
    )


class Up2x(nn.ConvTranspose2d):
    """2x2, stride-2 transposed convolution (the decoder's upsampling).

    In training on channels_last bf16 input it runs as the identical 1x1 convolution to 4x the
    channels, whose output is moved into place: oneDNN's bf16 transposed-convolution backward is 2x
    slower than its fp32 one on the CPU; this form's forward + backward is 2x faster, its forward
    alone a little slower (docs/performance.md). Same parameters, same result.
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_in, c_out, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dtype != torch.bfloat16 or not x.is_contiguous(memory_format=torch.channels_last)
                or not torch.is_grad_enabled()):
            return super().forward(x)
        n, c_in, h, w = x.shape
        c_out = self.weight.shape[1]
        weight = self.weight.permute(2, 3, 1, 0).reshape(4 * c_out, c_in, 1, 1)  # out channels (i, j, c)
        y = F.conv2d(x, weight, self.bias.repeat(4)).permute(0, 2, 3, 1)  # (n, h, w, 2 * 2 * c_out)
        y = y.reshape(n, h, w, 2, 2, c_out).transpose(2, 3).reshape(n, 2 * h, 2 * w, c_out)
        return y.permute(0, 3, 1, 2)  # channels_last (n, c_out, 2h, 2w)


class UNet(nn.Module):
    """Fully convolutional; input sides must be multiples of 8. out = x + head(decoder(...)).

    No normalisation layers: batch statistics would differ between a fit step and a scoring pass
    and between frames, and the net must export to ONNX/TensorRT with plain ops.
    The head starts at zero, so an untrained net is the identity.
    """

    levels = 3

    def __init__(self, base_channels: int = 32, in_channels: int = 3):
        super().__init__()
        ch = [base_channels * 2**i for i in range(self.levels + 1)]
        self.enc = nn.ModuleList([_double_conv(in_channels, ch[0])]
                                 + [_double_conv(ch[i], ch[i + 1]) for i in range(self.levels)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([Up2x(ch[i + 1], ch[i]) for i in reversed(range(self.levels))])
        self.dec = nn.ModuleList([_double_conv(2 * ch[i], ch[i]) for i in reversed(range(self.levels))])
        self.head = nn.Conv2d(ch[0], in_channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for i, enc in enumerate(self.enc):
            h = enc(h if i == 0 else self.pool(h))
            skips.append(h)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            h = dec(torch.cat([up(h), skip], dim=1))
        return x + self.head(h)
