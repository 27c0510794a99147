"""Sweeps: plan runs, group them, execute the groups (locally or on Ray), stream into the store."""
