"""The science of Fewer Frames: data, frame selection, models, losses, metrics, FLOPs, training loops.

Plain PyTorch, PyArrow and NumPy; nothing here imports Ray or MLflow.
"""

import os

# Batches of dequantised frames are large, fresh CPU tensors (a 64 x 300-frame batch is 88 MB); with
# 4 KB pages most of their cost is page faults. PyTorch backs allocations of 2 MB and more with
# transparent huge pages when this is set, which doubles the reader's decode rate. A user's own setting
# wins; it is read at PyTorch's first large allocation.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
