"""The report: the paper's tables and figures from a grid's finished cells, the published numbers beside
them, the paper's findings as measured, the summary a grid prints (the report's Table 1 and findings), and
Pareto fronts. `python -m orchestrator.report --experiment NAME` makes it from MLflow alone.

May import: orchestrator.errors, orchestrator.experiment, orchestrator.store, orchestrator.tracking, workloads, mlflow
"""

import os

# Artifact downloads (the representation samples of Figure 3) would print a progress bar each.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
