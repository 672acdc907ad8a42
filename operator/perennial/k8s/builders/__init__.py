"""Pure builders: plain data in, the dict of one Kubernetes object out (no I/O).

Every object the operator sends to the API server comes from a function here, so it is
unit-tested (and validated against the official schemas) without a server.
"""
