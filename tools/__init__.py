"""The commands above the layers: the `ssdnet` entry point (cli), eval, bench, soak and score.

Layers (checked by import-linter, pyproject.toml): tools > pipeline | export > edge. docs/architecture.md.
"""
