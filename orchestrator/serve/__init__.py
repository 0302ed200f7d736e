"""Serving: what a registered model carries and runs. The labeller (shard columns in, top classes out),
the MLflow Model that packs it with its weights, and batch prediction spread over Ray Data. A logged model
ships `workloads/` and this package only, so nothing here reaches into the rest of the orchestrator.

May import: workloads, mlflow, ray (inside functions)
"""
