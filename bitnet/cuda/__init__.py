"""CUDA backend (issue 12), in progress: the device kernels (kernels.cu) and the I2G weight layout (layout.py).

Not yet wired into bitnet.load: the launcher (cuda.core), the device forward pass and its CUDA graph are still
to come, so nothing here runs a model yet.
"""
