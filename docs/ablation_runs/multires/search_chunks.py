"""The memory search in pieces that stay in cache (docs/performance.md): 1024 cells against the 16 MB default's 51781
rows of 160 values, one thread, the 3 nearest rows; the whole product at once (the default: a 1024 x 51781 fp32 matrix,
212 MB, written and read back by topk) against the cells in chunks, and the bank in chunks whose 3 nearest are then
merged. Medians of 7 interleaved calls, and whether each finds the default's rows (random rows; a bank of
near-copies as in search_variants.py). Usage: python docs/ablation_runs/multires/search_chunks.py"""
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
torch.manual_seed(0)
M, Q, C, K = 51781, 1024, 160, 3
bank = F.normalize(torch.randn(M, C), dim=1).half()
q = F.normalize(torch.randn(Q, C), dim=1)


def search(queries, b, bb):
    return torch.addmm(-bb[None, :], queries, b.t(), alpha=2).topk(K, dim=1)


def default():
    b = bank.float()
    return search(q, b, (b * b).sum(1))[1]


def cells_in_chunks(n):
    def run():
        b = bank.float()
        bb = (b * b).sum(1)
        return torch.cat([search(part, b, bb)[1] for part in q.split(n)])
    run.__name__ = f"cells_by_{n}"
    return run


def bank_in_chunks(n):
    def run():
        b = bank.float()
        bb = (b * b).sum(1)
        parts = [search(q, b[i:i + n], bb[i:i + n]) for i in range(0, M, n)]
        top = torch.cat([p[0] for p in parts], 1)
        idx = torch.cat([p[1] + i * n for i, p in enumerate(parts)], 1)
        return idx.gather(1, top.topk(K, dim=1)[1])
    run.__name__ = f"bank_by_{n}"
    return run


variants = [default, cells_in_chunks(64), cells_in_chunks(256), bank_in_chunks(1024), bank_in_chunks(2048),
            bank_in_chunks(4096), bank_in_chunks(8192)]
times = {v.__name__: [] for v in variants}
for _ in range(7):
    for v in variants:
        t0 = time.perf_counter()
        v()
        times[v.__name__].append((time.perf_counter() - t0) * 1000)
same = {}
for name in ("random", "near-copies"):
    if name == "near-copies":
        looks = F.normalize(torch.randn(400, C), dim=1) * 3 ** 0.5
        bank = (looks.repeat(M // 400 + 1, 1)[:M] + 0.02 * torch.randn(M, C) / C ** 0.5 * 3 ** 0.5).half()
        q = looks[torch.randint(0, 400, (Q,))] + 0.02 * torch.randn(Q, C) / C ** 0.5 * 3 ** 0.5
    ref = default().sort(1).values
    for v in variants:
        same.setdefault(v.__name__, []).append((v().sort(1).values == ref).all(1).float().mean().item())
base = sorted(times["default"])[3]
for v in variants:
    t = sorted(times[v.__name__])[3]
    print(f"{v.__name__:14s} {t:6.0f} ms  {t / base:5.2f}x   the default's rows for {same[v.__name__][0]:.3f} of the "
          f"cells on random rows, {same[v.__name__][1]:.3f} on near-copies")
