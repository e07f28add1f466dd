"""Observers: the figures the pipeline writes (counters, delivery stats) and what exposes them."""
