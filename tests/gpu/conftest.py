"""``gpu`` fixture: ``mx.gpu(0)`` on a real GPU when the driver sees one, else on the CPU
emulation of CUDA (tests/cuda_emulator) installed as gpu(0), so the GPU code paths of
NDArray, Executor and Gluon run in CI. Tests marked ``gpu`` need real hardware (or
``KILN_TEST_EMULATED_GPU=1`` to run them on the emulator, slowly)."""
import os

import pytest

import kiln as mx
from kiln.runtime import cuda


def _real_gpus():
    previous = cuda.install_devices(None)
    try:
        return cuda.device_count()
    finally:
        cuda.install_devices(previous)


REAL = _real_gpus() > 0
EMULATE_MARKED = os.environ.get("KILN_TEST_EMULATED_GPU") == "1"


@pytest.fixture(scope="package")
def gpu():
    if REAL:
        yield mx.gpu(0)
        return
    emulator = pytest.importorskip("tests.cuda_emulator.device")
    if not emulator.available():
        pytest.skip("no GPU and no C++ compiler for the CUDA emulator")
    previous = cuda.install_devices([emulator.EmulatedDevice()])
    try:
        yield mx.gpu(0)
    finally:
        mx.nd.waitall()
        cuda.install_devices(previous)


def pytest_collection_modifyitems(config, items):
    if REAL or EMULATE_MARKED:
        return
    skip = pytest.mark.skip(reason="needs a GPU (KILN_TEST_EMULATED_GPU=1 runs it on the CUDA emulator)")
    for item in items:
        if "gpu" in item.keywords and item.get_closest_marker("gpu"):
            item.add_marker(skip)
