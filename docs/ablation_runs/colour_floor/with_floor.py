"""Run an `ssdnet` command, or one of this folder's scripts, with edge.local_stats.SPREAD_FLOOR set to LEVELS grey
levels (in this process: `ssdnet eval` needs `--jobs 1` for the setting to hold).

    python docs/ablation_runs/colour_floor/with_floor.py 0.5 eval ../shared/datasets/textures-dev \\
        --categories plaster --mode stream --jobs 1 --baselines none
    python docs/ablation_runs/colour_floor/with_floor.py 0.5 docs/ablation_runs/colour_floor/codec_ghost.py
"""
from __future__ import annotations

import runpy
import sys

import edge.local_stats as local_stats

if __name__ == "__main__":
    local_stats.SPREAD_FLOOR = float(sys.argv[1]) / 255
    if sys.argv[2].endswith(".py"):  # the script compares no floor with this one
        sys.argv = sys.argv[2:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        from tools.cli import main

        sys.exit(main(sys.argv[2:]))
