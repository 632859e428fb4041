"""Benchmarks of p2ptchap: each script runs alone, ``bench/run.py`` runs them all.

Nothing here is imported by the package or asserted on time by the tests;
see ``bench/README.md``.
"""
