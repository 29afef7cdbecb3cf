"""The CUDA kernels, callable one by one (float32, C-contiguous, NCHW / [N, F]).

On CuPy arrays an op launches its kernel on the GPU (``ekdaa_cuda._C``); on NumPy arrays it runs
the very same kernel on the CPU simulator (``ekdaa_cuda._sim``, docs/cuda-sim.md). ``device=``
("cuda" / "cuda-sim") names the device explicitly; all arrays of a call must belong to it.

Each op validates its arguments (dtype, shape, contiguity, device) and raises ``ValueError``
naming the op and the argument; a CUDA failure, or a kernel bug the simulator detects, raises
``RuntimeError`` naming the op. Set ``EKDAA_SYNC_LAUNCHES=1`` to synchronise after every launch
while debugging. Semantics and layouts are documented on each function; the float64 oracle of
each is in ``ekdaa_cuda.reference``.

Importing this package needs neither CuPy nor a GPU nor the simulator; calling an op needs the
device's extension (and CuPy for "cuda").
"""

from .conv import (
    conv_block_fwd,
    conv_error_proj,
    conv_filter_update,
    conv_filter_update_pooled,
    conv_filter_update_pooled_workspace,
    conv_filter_update_workspace,
    conv_proj,
    unpool_bilinear,
    unpool_error,
)
from .fc import (
    error_epilogue,
    fc_error_proj,
    fc_fwd,
    fc_fwd_workspace,
    fc_proj,
    fc_softmax_error,
    fc_softmax_error_workspace,
    fc_update,
    fc_update_proj,
    softmax_error,
)
from .optim import MultiTensorOptimizer

__all__ = [
    "MultiTensorOptimizer",
    "conv_block_fwd",
    "conv_error_proj",
    "conv_filter_update",
    "conv_filter_update_pooled",
    "conv_filter_update_pooled_workspace",
    "conv_filter_update_workspace",
    "conv_proj",
    "error_epilogue",
    "fc_error_proj",
    "fc_fwd",
    "fc_fwd_workspace",
    "fc_proj",
    "fc_softmax_error",
    "fc_softmax_error_workspace",
    "fc_update",
    "fc_update_proj",
    "softmax_error",
    "unpool_bilinear",
    "unpool_error",
]
