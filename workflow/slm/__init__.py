"""Selective Language Modeling (Rho-1): the pipeline's Python package, one module per stage."""
