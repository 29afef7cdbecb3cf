"""ekdaa_cuda — EKDAA (error-kernel driven activation alignment) and the rules it is
compared with, with fused CUDA kernels and a NumPy reference backend.

    import ekdaa_cuda
    model = ekdaa_cuda.build_model("fmnist", rule="ekdaa")
    result = ekdaa_cuda.train(preset="fmnist", epochs=1)
    print(result.test_accuracy)

``backend="cuda"`` runs the fused CUDA kernels on a GPU; ``backend="cuda-sim"`` runs the same
kernels on the CPU simulator ``ekdaa_cuda._sim`` (slow; for testing and debugging kernels).
"""

__version__ = "0.1.0"  # before the imports: training records it

from ._device import cuda_available, cuda_status, sim_available, sim_status
from .model import RULES, Model, build_model
from .training import train

__all__ = ["RULES", "Model", "__version__", "build_model", "cuda_available", "cuda_status", "sim_available",
           "sim_status", "train"]
