"""Evaluation on MVTec-AD style folders: `ssdnet eval` (evaluate), its metrics, dataset reader and baselines."""
