"""Analyses derived from stored runs: double descent, scaling laws, theory, implicit regularization."""
