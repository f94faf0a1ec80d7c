"""Ratio benchmarks of linalg_core against peers measured in the same run (see __main__)."""
