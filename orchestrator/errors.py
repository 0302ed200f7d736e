class OrchestratorError(Exception):
    """A preset, store or run that cannot go ahead; the message names the file, key or cell."""
