"""The memory search in isolation (docs/performance.md): 1024 cells against a 51781-row bank of 160 values (the 16 MB
default), random unit rows, one thread, the 3 nearest rows. Variants of the same result, medians of 7 interleaved
calls; then whether each finds the default's rows, on those rows and on a bank of near-copies (400 looks, ~130 rows
each within 0.02, rows of norm sqrt(3) as the memory's three unit layers projected). Usage (repository root):
python docs/ablation_runs/multires/search_variants.py (output: search_variants.log)."""
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

M, Q, C, K = 51781, 1024, 160, 3
Search = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (cells, fp16 bank) -> the K nearest rows' indices


def default(q: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    b = bank.float()
    return torch.addmm(-(b * b).sum(1)[None, :], q, b.t(), alpha=2).topk(K, dim=1)[1]


def norms_as_a_column(q, bank):
    b = bank.float()
    aug = torch.cat([b, (b * b).sum(1, keepdim=True)], 1)
    return (torch.cat([2 * q, -torch.ones(Q, 1)], 1) @ aug.t()).topk(K, dim=1)[1]


def product_then_subtract(q, bank):
    b = bank.float()
    return torch.mm(q, b.t()).mul_(2).sub_((b * b).sum(1)).topk(K, dim=1)[1]


def three_max_passes(q, bank):
    b = bank.float()
    c = torch.addmm(-(b * b).sum(1)[None, :], q, b.t(), alpha=2)
    idx = []
    for _ in range(K):
        i = c.argmax(1)
        idx.append(i)
        c.scatter_(1, i[:, None], float("-inf"))
    return torch.stack(idx, 1)


def bf16_candidates(q, bank, n=8):
    cand = torch.addmm(-(bank.float() ** 2).sum(1)[None, :].bfloat16(), (2 * q).bfloat16(),
                       bank.bfloat16().t()).topk(n, dim=1)[1]
    d2 = ((bank[cand].float() - q[:, None]) ** 2).sum(2)
    return cand.gather(1, d2.topk(K, dim=1, largest=False)[1])


def compare(variants: list[Search]) -> None:
    """Time each variant (one thread, medians of 7 interleaved calls) on random unit rows, then print its time, its
    ratio to `default`'s and the share of cells where it finds `default`'s rows, on random rows and near-copies."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    bank, q = F.normalize(torch.randn(M, C), dim=1).half(), F.normalize(torch.randn(Q, C), dim=1)
    times: dict[str, list[float]] = {v.__name__: [] for v in variants}
    for _ in range(7):
        for v in variants:
            t0 = time.perf_counter()
            v(q, bank)
            times[v.__name__].append((time.perf_counter() - t0) * 1000)
    same: dict[str, list[float]] = {}
    for name in ("random", "near-copies"):
        if name == "near-copies":
            looks = F.normalize(torch.randn(400, C), dim=1) * 3 ** 0.5
            bank = (looks.repeat(M // 400 + 1, 1)[:M] + 0.02 * torch.randn(M, C) / C ** 0.5 * 3 ** 0.5).half()
            q = looks[torch.randint(0, 400, (Q,))] + 0.02 * torch.randn(Q, C) / C ** 0.5 * 3 ** 0.5
        ref = default(q, bank).sort(1).values
        for v in variants:
            same.setdefault(v.__name__, []).append((v(q, bank).sort(1).values == ref).all(1).float().mean().item())
    base = sorted(times["default"])[3]
    for v in variants:
        t = sorted(times[v.__name__])[3]
        print(f"{v.__name__:22s} {t:6.0f} ms {t / base:5.2f}x   the default's rows for "
              f"{same[v.__name__][0]:.3f} of the cells on random rows, {same[v.__name__][1]:.3f} on near-copies")


if __name__ == "__main__":
    compare([default, norms_as_a_column, product_then_subtract, three_max_passes, bf16_candidates])
