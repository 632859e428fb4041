"""Chaos runs: real nodes in network namespaces, random faults, then the convergence checks."""
