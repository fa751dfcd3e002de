"""Toy studies that train no language model: the paper's least-squares study (linreg)."""
