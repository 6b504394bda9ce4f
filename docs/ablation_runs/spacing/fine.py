"""Offline: memory features at 1x (8 px cells) vs on the 2x-enlarged input (4 px cells), memory alone."""
from common import *
D = {}
for up, pf in ((1, 100), (2, 100)):  # (2, 400) was started and stopped: hours on 2 cores
    B = bank(up, pf)
    D[up, pf] = {k: memdist(e[up], B) for k, e in R.items()}
    evaluate(lambda k: upmap(D[up, pf][k], R[k]), f'mem {up}x, {pf}/frame ({len(B)} rows)')
