"""The SSDnet reconstruction network: a U-Net with 3 down, 3 up, skips and a global residual."""
from __future__ import annotations

import torch
from torch import nn


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
    )


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
        self.enc = nn.ModuleList([_double_conv(in_channels, ch[0])] + [_double_conv(ch[i], ch[i + 1]) for i in range(self.levels)])
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList([nn.ConvTranspose2d(ch[i + 1], ch[i], 2, stride=2) for i in reversed(range(self.levels))])
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
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1])):
            h = dec(torch.cat([up(h), skip], dim=1))
        return x + self.head(h)
