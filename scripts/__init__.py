"""Maintenance scripts (weights, default PCA, setup); run from the repository root as `python -m scripts.NAME`."""
