"""The science of Fewer Frames: data, frame selection, models, losses, metrics, FLOPs, training loops.

Plain PyTorch, PyArrow and NumPy; nothing here imports Ray or MLflow.
"""

from workloads.memory import prefer_huge_pages

# Batches of dequantised frames are large, fresh CPU tensors; PyTorch reads its huge-page setting at its
# first large allocation, so it is set as soon as the package is imported (see `workloads.memory`).
prefer_huge_pages()
