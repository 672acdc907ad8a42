"""Training: load data, validate it, fit, evaluate, explain and report a candidate."""
