"""Benchmarks: scripts that print JSON figures (run them as ``python -m bench.<name>``)."""
