"""The experiment, as data: what is to be run, before anything runs.

Presets (YAML validated into frozen dataclasses), the matrix they expand into (teachers and cells, whose
ids are hashes of what defines them), the modes a cell trains in, what a finished cell yields (its result,
a search trial, and `CellOutcome`: the one model of a finished cell that the summary, the findings and the
report read), and search spaces.

May import: orchestrator.errors, workloads, ray (inside functions)
"""
