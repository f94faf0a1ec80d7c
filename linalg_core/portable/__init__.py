"""Plain-JAX kernels: the path on every backend that has no linalg_core kernel (GPU until the CUDA
kernels land, TPU), and the "plain JAX" peer of the GPU benchmarks.

Each function here has exactly the contract of one FFI handler (the same operands with leading
batch axes, the same static attributes, the same outputs and status codes), so
:func:`linalg_core._jax.call` can pick the FFI kernel on the CPU and this one elsewhere with
``jax.lax.platform_dependent``. XLA lowers the dense linear algebra to cuSOLVER/cuBLAS on GPUs.
"""
