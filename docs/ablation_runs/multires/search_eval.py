"""`ssdnet eval DS --mode stream --jobs 1 --baselines none --categories C --json OUT [EVAL ARGS...]` with the memory
search as it was before 2026-12-03 or as it is now; the metrics must be identical, the time per image is what changes.
`--whole-allocation`: the torch scorer searches the bank's whole allocation, not its filled rows; `--search-rows N`:
N bank rows at a time (edge.memory.SEARCH_ROWS; 1000000000 = the whole bank at once). One job: the switches are
this process's. Usage: python docs/ablation_runs/multires/search_eval.py [--whole-allocation] [--search-rows N] DS
CATEGORIES OUT.json [EVAL ARGS...]"""
import argparse
import sys

import edge.memory
from edge.scorers.torch_scorer import TorchScorer
from tools.cli import main

p = argparse.ArgumentParser()
p.add_argument("--whole-allocation", action="store_true")
p.add_argument("--search-rows", type=int, default=edge.memory.SEARCH_ROWS)
p.add_argument("dataset")
p.add_argument("categories")
p.add_argument("out")
args, rest = p.parse_known_args()
TorchScorer.filled_rows_only = not args.whole_allocation
edge.memory.SEARCH_ROWS = args.search_rows
sys.exit(main(["eval", args.dataset, "--mode", "stream", "--jobs", "1", "--baselines", "none", "--categories",
               args.categories, "--json", args.out, *rest]))
