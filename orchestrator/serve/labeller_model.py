"""The MLflow Model's entry point (MLflow's "models from code"): loading a published model runs this file,
with the package's own copy of `workloads` and this serving package on the path, instead of unpickling an object."""

import mlflow

from orchestrator.serve.labeller import VideoLabeller

mlflow.models.set_model(VideoLabeller())
