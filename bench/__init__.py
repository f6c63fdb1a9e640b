"""Benchmarks: `python -m bench` measures doppelbot's serving path against the fastai book's, side by side."""
