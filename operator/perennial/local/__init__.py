"""The continuous-training loop on one machine, without a cluster (``perennial local``).

A development and evaluation tool: the same TrainingPipeline and ModelDeployment YAML a
user would apply to a cluster, run with local processes (trainer, model servers, a stable
loopback endpoint) and the operator's own pure decisions (:mod:`perennial.core`). See
docs/local.md. :mod:`perennial.local.demo` tells the whole story on a drifting stream.
"""
