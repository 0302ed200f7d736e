"""The store: one root (a local folder or an `s3://` URI) holding everything a grid makes, and whether it
can be used. Its layout and typed result files, the checks before a grid starts and after a failure, the
kept models' weights and the representation samples.

May import: orchestrator.errors, orchestrator.experiment, workloads
"""
