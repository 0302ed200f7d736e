"""The shipped presets (`smoke`, `tiny`, `paper`) as YAML files: data, read by
`orchestrator.experiment.presets`. A package only so that they install and load as its resources.

May import: nothing
"""
