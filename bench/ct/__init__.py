"""``make bench-ct``: how well continuous-training triggers keep a model accurate for what
they cost, measured by driving ``perennial local`` on seeded drifting streams."""
