"""The one exception type of the science layer.

Anything in `workloads` that rejects its input raises `WorkloadError` (or a subclass) with a message that
names the file, record or field and what is wrong with it, so command-line entry points can print it on one
line instead of a traceback.
"""


class WorkloadError(Exception):
    """Bad input to the science layer: the message names what and where."""


class DataError(WorkloadError):
    """A shard, TFRecord or data-set argument that cannot be read as promised."""
