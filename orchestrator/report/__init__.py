"""The paper's tables and figures from a grid's MLflow experiment, beside the published numbers:
`python -m orchestrator.report --experiment NAME` (see `orchestrator.report.build`)."""

import os

# Artifact downloads (the representation samples of Figure 3) would print a progress bar each.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
