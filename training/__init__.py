"""Gather, clean, train, evaluate, export."""
