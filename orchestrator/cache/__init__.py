"""The teacher cache: each teacher's outputs (E_T, P_T, I_T) over its training videos, written once as
Parquet parts in the store and read by every serial student instead of running the teacher. Its keys, its
files and manifest, its checks and the reader students use.

May import: orchestrator.errors, orchestrator.experiment, orchestrator.store, workloads
"""
