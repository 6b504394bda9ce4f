"""The fit step's speed-ups compute what the plain fp32 formulation computes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edge.detector import Detector
from edge.device import autocast, memory_format
from edge.fitter import Fitter
from edge.scorers.factory import choose_backend
from edge.unet import Up2x
from edge.vgg import VGG19Features, cosine_similarity
from test_core import tiny_config


def _bf16_cl(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", [(2, 16, 8, 8), (1, 32, 5, 7)])
def test_up2x_bf16_form_matches_the_transposed_convolution(shape):
    torch.manual_seed(0)
    up = Up2x(shape[1], 8)
    x = torch.randn(shape)
    ref = F.conv_transpose2d(x, up.weight, up.bias, stride=2)
    assert torch.equal(up(x), ref)  # fp32: the module's own transposed convolution

    xb = _bf16_cl(x).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = up(xb)
    assert out.shape == ref.shape and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)

    g = torch.randn_like(ref)
    out.backward(g.to(out.dtype))
    grads = [xb.grad.float(), up.weight.grad.clone(), up.bias.grad.clone()]
    up.zero_grad()
    x32 = x.clone().requires_grad_()
    F.conv_transpose2d(x32, up.weight, up.bias, stride=2).backward(g)
    for got, want in zip(grads, [x32.grad, up.weight.grad, up.bias.grad], strict=True):
        torch.testing.assert_close(got, want, rtol=3e-2, atol=3e-2 * float(want.abs().max()))


def test_cosine_similarity_matches_torch():
    torch.manual_seed(0)
    a, b = torch.randn(3, 16, 5, 6), torch.randn(3, 16, 5, 6)
    b[0, :, 0, 0] = 0  # a zero vector: similarity 0, no NaN
    want = F.cosine_similarity(a, b, dim=1)
    torch.testing.assert_close(cosine_similarity(a, b), want, rtol=1e-5, atol=1e-6)
    got = cosine_similarity(_bf16_cl(a), _bf16_cl(b))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=2e-2)


def test_vgg_reflection_padding_stays_bf16_under_autocast():
    """AdaIN's trunk pads by reflection outside autocast (CPU autocast would pad in fp32): the same
    features as PyTorch's reflect-padded convolutions, in fp32 exactly and in bf16 to its precision."""
    vgg = VGG19Features(None, ("relu1_2", "relu2_2"))
    assert vgg.format == "adain"
    x = torch.rand(2, 3, 24, 24)
    ref = F.conv2d(x, vgg.pre_w, vgg.pre_b)
    for i, conv in enumerate(vgg.convs[:4]):
        ref = F.relu(F.conv2d(F.pad(ref, (1, 1, 1, 1), mode="reflect"), conv.weight, conv.bias))
        if i == 1:
            ref = F.max_pool2d(ref, 2, ceil_mode=True)
    torch.testing.assert_close(vgg(x)["relu2_2"], ref, rtol=1e-5, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert vgg._pad(_bf16_cl(torch.rand(1, 4, 6, 6))).dtype == torch.bfloat16
        got = vgg(_bf16_cl(x))["relu2_2"]
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ref, rtol=0.05, atol=0.05 * float(ref.abs().max()))


def test_mixed_precision_fit_matches_fp32_and_leaves_the_shared_vgg_alone(textures, native_bf16):
    """One step's loss in bf16 + channels_last is the fp32 NCHW loss; the scorer's VGG stays fp32."""
    losses = {}
    for amp, channels_last in ((False, False), (True, None)):
        cfg = tiny_config(fit={"amp": amp, "channels_last": channels_last})
        det = Detector(cfg, "cpu")
        losses[amp] = det.fitter.fit(textures["gravel"], steps=1).loss
        assert det.scorer.vgg.convs[0].weight.dtype == torch.float32
        assert det.fitter.vgg.convs[0].weight.dtype == (torch.bfloat16 if amp else torch.float32)
    assert np.isfinite(losses[True]) and losses[True] == pytest.approx(losses[False], rel=0.03)


def test_mixed_precision_is_fp32_where_the_cpu_only_emulates_bf16(textures, emulated_bf16):
    """`fit.amp` and `score.amp` ask for bf16, but a CPU without native bf16 (AVX2) would run it ~6x slower than
    fp32: the fitter, its VGG copy and the scorer stay fp32 there, and `auto` says why."""
    det = Detector(tiny_config(fit={"amp": True}, score={"amp": True}), "cpu")
    assert not det.fitter.amp and det.fitter.vgg.convs[0].weight.dtype == torch.float32
    assert det.backend.info()["bf16"] is False and "no native bf16" in choose_backend(det.cfg.score, "cpu").reason
    with autocast(torch.device("cpu"), True):
        assert (torch.rand(2, 2) @ torch.rand(2, 2)).dtype == torch.float32
    assert np.isfinite(det.process(textures["brick"][:64, :64]).score)


def test_memory_format_policy(textures):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert memory_format(cpu, amp=False) == torch.channels_last  # oneDNN: faster in fp32 too
    assert memory_format(cuda, amp=False) == torch.contiguous_format
    assert memory_format(cuda, amp=True) == torch.channels_last
    assert memory_format(cpu, amp=True, channels_last=False) == torch.contiguous_format
    for amp in (False, True):
        f = Fitter(tiny_config(fit={"amp": amp, "channels_last": False}), "cpu")
        assert f.fmt == torch.contiguous_format
        assert np.isfinite(f.fit(textures["brick"], steps=1).loss)
