"""CUDA backend (issue 12): the forward pass on an NVIDIA GPU (sm_80 and newer), behind the same interface as the
CPU's (bitnet.backends), selected with bitnet.load(path, device="cuda"), `--device cuda` or
BITNET_DEVICE=cuda.

- kernels.cu: the device kernels, compiled to PTX at package build time (setup.py, nvcc) or by NVRTC at run
  time (compile.py);
- layout.py: the I2G layout ternary weights take on the device, and a host model of the kernel's dot;
- driver.py: the GPU through cuda.bindings (memory, launches, CUDA graphs), the `.[cuda]` extra;
- forward.py: CudaTransformer and CudaContext, the forward pass as launches, the decode step as a CUDA graph.
"""
