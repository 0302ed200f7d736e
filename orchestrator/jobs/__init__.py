"""The jobs: what runs on a Ray worker. A cell (baseline, serial student, parallel pair), a teacher (one Ray
Train fit, its checkpoints and caches), the timing job, and the data set they all read. Jobs talk to no
tracking store: they return typed results, and the driver records them.

May import: orchestrator.errors, orchestrator.experiment, orchestrator.store, orchestrator.cache, workloads, ray (inside functions)
"""
