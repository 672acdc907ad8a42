"""``make bench-serving``: our model server against MLServer on the same models and client.

Run ``python -m bench.serving --help`` from the repository root; docs/benchmarks.md
describes the method and holds the last results.
"""
