"""CUDA emulator for tests: run the CUDA backend's kernels on the CPU (see device.py)."""
