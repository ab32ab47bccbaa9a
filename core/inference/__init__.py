"""Serving trained artifacts: load a model folder once, then predict, embed or re-rank in batches."""
