"""Benchmarks behind ``llmos bench`` and ``benchmarks/``: llmos against its baselines, in one run."""
