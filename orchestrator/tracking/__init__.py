"""MLflow, from the driver only: the one schema of names (params, metrics, tags, artifacts) that writes
runs and reads them back, the tracker of an experiment's parent, cell and trial runs, whether a run's
driver still lives, reading an experiment's cells back, and the registry of published models.

May import: orchestrator.errors, orchestrator.experiment, orchestrator.store, orchestrator.serve, workloads, mlflow
"""
