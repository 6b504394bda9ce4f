"""The memory search in pieces that stay in cache (docs/performance.md), with search_variants.py's harness: the whole
product at once (the default: a 1024 x 51781 fp32 matrix, 212 MB, written and read back by topk) against the cells
in chunks, and the bank in pieces whose 3 nearest are then merged (edge.memory.SEARCH_ROWS).
Usage: python docs/ablation_runs/multires/search_chunks.py (output: search_chunks.log)."""
import torch
from search_variants import K, M, Search, compare, default


def search(q, b, bb):
    return torch.addmm(-bb[None, :], q, b.t(), alpha=2).topk(K, dim=1)


def cells_in_chunks(n: int) -> Search:
    def run(q, bank):
        b = bank.float()
        bb = (b * b).sum(1)
        return torch.cat([search(part, b, bb)[1] for part in q.split(n)])
    run.__name__ = f"cells_by_{n}"
    return run


def bank_in_pieces(n: int) -> Search:
    def run(q, bank):
        b = bank.float()
        bb = (b * b).sum(1)
        parts = [search(q, b[i:i + n], bb[i:i + n]) for i in range(0, M, n)]
        top = torch.cat([p[0] for p in parts], 1)
        idx = torch.cat([p[1] + i * n for i, p in enumerate(parts)], 1)
        return idx.gather(1, top.topk(K, dim=1)[1])
    run.__name__ = f"bank_by_{n}"
    return run


def pieces_then(n: int, how: str) -> Search:
    """Pieces of `n` rows, each product formed another way: `subtract` (the product, then the norms subtracted in
    place) or `column` (the norms as a 161st column of the bank, -1 of the cells: one product, no broadcast)."""
    def run(q, bank):
        b = bank.float()
        bb = (b * b).sum(1)
        if how == "column":
            b, q = torch.cat([b, bb[:, None]], 1), torch.cat([2 * q, -torch.ones(len(q), 1)], 1)
        parts = []
        for i in range(0, M, n):
            if how == "column":
                c = q @ b[i:i + n].t()
            else:
                c = torch.mm(q, b[i:i + n].t()).mul_(2).sub_(bb[i:i + n])
            parts.append(c.topk(K, dim=1))
        top = torch.cat([p[0] for p in parts], 1)
        idx = torch.cat([p[1] + i * n for i, p in enumerate(parts)], 1)
        return idx.gather(1, top.topk(K, dim=1)[1])
    run.__name__ = f"bank_by_{n}_{how}"
    return run


compare([default, cells_in_chunks(64), cells_in_chunks(256), bank_in_pieces(1024), bank_in_pieces(2048),
         bank_in_pieces(4096), bank_in_pieces(8192), pieces_then(4096, "subtract"), pieces_then(4096, "column")])
