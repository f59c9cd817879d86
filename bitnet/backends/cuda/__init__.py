"""CUDA backend (issue 12): the forward pass on an NVIDIA GPU (sm_80 and newer), behind the same interface as the
CPU's (bitnet.backends), selected with bitnet.load(path, device="cuda"), `--device cuda` or
BITNET_DEVICE=cuda.

- kernels.cu: the device kernels, built at package build time by nvcc into kernels.fatbin (SASS per
  architecture) and kernels.ptx (build.py, run by setup.py), or compiled by NVRTC at run time; compile.py picks
  the image a GPU loads;
- layout.py: the I2G layout ternary weights take on the device, and a host model of the kernel's dot;
- driver.py: the GPU through cuda.bindings (memory, launches, CUDA graphs), the `.[cuda]` extra;
- forward.py: CudaTransformer and CudaContext, the forward pass as launches, the decode step as a CUDA graph.
"""
