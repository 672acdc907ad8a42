"""``make bench-operator``: the operator at scale on the kmock emulator (see run.py)."""
