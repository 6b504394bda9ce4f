"""A warm 256x256 frame of the default with its memory bank full, one thread: the memory search over the whole bank at
once (before 2026-12-03) against `edge.memory.SEARCH_ROWS`-row pieces (now); interleaved, medians.
Usage: python docs/ablation_runs/multires/search_pieces_frame.py"""
import json

import torch

import edge.memory
from edge.config import SSDNetConfig
from edge.detector import Detector
from tools.bench import _frames, _warm_frame_ms, fill_bank

torch.set_num_threads(1)


def searching(det: Detector, rows: int) -> Detector:
    """`det`, whose frames search the bank `rows` rows at a time."""
    process = det.process

    def run(image):
        edge.memory.SEARCH_ROWS = rows
        return process(image)
    det.process = run
    return det


variants = {"whole bank at once": searching(Detector(SSDNetConfig()), 10**9),
            f"{edge.memory.SEARCH_ROWS}-row pieces": searching(Detector(SSDNetConfig()), edge.memory.SEARCH_ROWS)}
for det in variants.values():
    fill_bank(det.memory)
print(json.dumps(_warm_frame_ms(variants, _frames(256, 9, seed=3), full_bank=False), indent=1))
