"""Benchmark suite of icecube-cloud (issue #6, SPEC §8): ``python -m benchmarks.run``.

Kept out of the package and of ``make test``; ``tests/test_80_bench_smoke.py`` runs a tiny version so
the suite never rots.
"""
