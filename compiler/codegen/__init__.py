"""Backends: kernel IR -> native code text (LLVM IR for CPU)."""
