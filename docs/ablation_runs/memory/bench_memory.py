"""The bench's memory section alone (tools.bench.bench_memory), 1 thread, 256x256, 6 frames.
Usage (repository root): python docs/ablation_runs/memory/bench_memory.py OUT.json (docs/results/bench-memory-candidates256.json)."""
import json, sys, torch
sys.path.insert(0, '.')
from edge.config import SSDNetConfig
from tools.bench import bench_memory
torch.set_num_threads(1)
rows = bench_memory(SSDNetConfig(), 256, 6)
for mb, v in rows.items():
    print(mb, v['rows'], 'search', v['search_ms'], 'write', v['add_ms'], 'frame', round(v['frame_ms']), 'score', round(v['score_ms']))
json.dump(rows, open(sys.argv[1], 'w'), indent=1)
