"""`ssdnet eval DS --mode stream --jobs 1 --baselines none --categories C --json OUT` with the torch scorer's memory
search over the bank's filled rows (`filled`, the default) or its whole allocation (`whole`, as before 2026-12-03):
the metrics must be identical, the time per image is what changes. One job: the switch is a class attribute of this
process. Usage: python docs/ablation_runs/multires/filled_rows_eval.py filled|whole DS CATEGORIES OUT.json"""
import sys

from edge.scorers.torch_scorer import TorchScorer
from tools.cli import main

variant, dataset, categories, out = sys.argv[1:]
TorchScorer.filled_rows_only = variant == "filled"
sys.exit(main(["eval", dataset, "--mode", "stream", "--jobs", "1", "--baselines", "none", "--categories", categories,
               "--json", out]))
