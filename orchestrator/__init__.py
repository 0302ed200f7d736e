"""Fewer Frames' orchestrator: the paper's experiment matrix on Ray, cached teachers, MLflow tracking.

No telemetry leaves the machine: Ray's usage stats and MLflow's telemetry are off unless a user turns
them on explicitly in the environment.
"""

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
