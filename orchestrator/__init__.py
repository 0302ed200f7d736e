"""Fewer Frames' orchestrator: the paper's experiment matrix on Ray, cached teachers, MLflow tracking.

No telemetry leaves the machine: Ray's usage stats and MLflow's telemetry are off unless a user turns
them on explicitly in the environment. MLflow's "View run ... at URL" lines are off too: they print the
tracking URI whole, a password in it included (the commands print their own links, masked).
"""

import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
