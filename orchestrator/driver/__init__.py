"""The driver: one invocation of the grid or a search. The session around it (Ray, the store, signals, exit
codes), the ledger of what is done, the schedule that starts jobs as their inputs become ready, the live
channel of epochs, the console, the grid's closing steps, `--plan` and the cost model.

May import: orchestrator.errors, orchestrator.experiment, orchestrator.store, orchestrator.cache, orchestrator.jobs, orchestrator.tracking, orchestrator.report, workloads, ray, mlflow
"""
