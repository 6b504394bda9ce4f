"""Section 39: would the frame's own self-similarity keep a defective warm-up frame's crack cells out of the memory?
Of the cells the memory's distance rule admits while the split's crack warm-up streams (crack_warmup.py), the share
whose self-similarity z (the frame's robust stds above its median) exceeds T: of the crack's cells, and of all cells
of the normal frames. Usage, from the repository root:
    python docs/ablation_runs/admission/own_rule.py SHARED_DATASETS SPLIT_OUT   (output: own_rule.log)"""
import sys
from pathlib import Path

sys.path[:0] = ['.', 'docs/ablation_runs/admission']
from crack_warmup import admitted_cells  # noqa: E402

T = (1.0, 1.5, 2.0, 3.0, 4.0)
rows = admitted_cells(Path(sys.argv[1]), Path(sys.argv[2]), lambda z, ratio: z[..., None])
for kind, f in rows.items():
    z = f[:, 0]
    print(f"{kind}: {z.size} cells the distance rule admits; share with z > T: "
          + ", ".join(f"{t:g}: {(z > t).mean():.3f}" for t in T), flush=True)
