"""Test support importable by tests and benchmarks: fakes, harnesses, seeded sources."""
