"""Video classifiers behind one interface, in one registry.

`ModelSpec(family, size, overrides).build(num_classes, k=None)` (or `build_model(family, size,
num_classes, k=None, **overrides)`) builds any registered family at a named size: `paper` (the published
hyper-parameters) or `small` (for CPU runs); `k` (the frames a student sees) lets a family adapt to a
student's input (H-RNN's block length). Every model maps `(frames, mask)` to a `ModelOutput`.
"""

from workloads.models.base import (  # noqa: F401
    FAMILIES,
    ModelOutput,
    ModelSpec,
    VideoModel,
    build_model,
    family_config,
    find_family,
    register_family,
)
from workloads.models import hrnn, netvlad, nextvlad  # noqa: F401  (registers the families)
