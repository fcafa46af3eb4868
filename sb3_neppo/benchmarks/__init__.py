"""Reproductions of the paper's tables: ``python -m sb3_neppo.benchmarks.table1``."""
