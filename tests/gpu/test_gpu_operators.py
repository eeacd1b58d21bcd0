"""Every registry operator, forward and backward, on the GPU against the CPU: the operator
instance of the codegen tests (``tests/compiler/test_cuda_codegen.instance``) compiled once
per backend, fed the same inputs, head gradients and random key; every output, gradient
and updated state must agree. Marked ``gpu``: it runs on a real GPU (on the CUDA emulator
with ``KILN_TEST_EMULATED_GPU=1``; CI's emulated sweep is tests/compiler/test_cuda_emulated.py)."""
import numpy as np
import pytest

from kiln.compiler.ops import registry
from kiln.compiler.pipeline import compile_program
from kiln.runtime.cuda_program import CudaProgram, DeviceArray
from kiln.runtime.program import LoadedProgram
from kiln.runtime import cuda
from tests.compiler.test_cuda_codegen import instance, with_gradient

TOL = {"float16": (2e-2, 2e-2), "float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12)}


def _compile(op, backend):
    """(spec, info, input values) of the operator's sample instance, with its gradient where it has one."""
    heads, shapes, types, given, req = instance(op, np.random.RandomState(0))

    def build(*args):
        return compile_program(*args, backend=backend)
    return with_gradient(build, heads, shapes, types, req) + (given,)


def _feeds(spec, info, given):
    rng = np.random.RandomState(1)
    written = set(info["outputs"]) | set(info["grads"].values()) | set(info.get("aux_updates", {}).values())
    feeds = {}
    for s in spec.slots:
        if not s.external or s.name in written:
            continue
        if s.name in given:
            feeds[s.name] = np.ascontiguousarray(given[s.name])
        elif s.name == info.get("rng_key"):
            feeds[s.name] = np.array([12345, 678], dtype=s.dtype)
        elif np.dtype(s.dtype).kind == "f":
            feeds[s.name] = rng.uniform(0.2, 1.8, s.shape).astype(s.dtype)
        else:
            feeds[s.name] = rng.randint(0, 2, s.shape).astype(s.dtype)
    return feeds


def _run(spec, feeds, device):
    entries = ("forward", "backward")
    if device is None:
        prog = LoadedProgram(spec)
        arrays = {k: v.copy() for k, v in feeds.items()}
        arrays.update({s.name: np.zeros(s.shape, s.dtype) for s in spec.slots if s.external and s.name not in feeds})
        for k, v in arrays.items():
            prog.bind(k, v)
        for e in entries:
            prog.run(e)
        return {k: v for k, v in arrays.items() if k not in feeds}
    prog = CudaProgram(spec, device)
    arrays = {k: DeviceArray.from_numpy(device, v) for k, v in feeds.items()}
    for s in spec.slots:
        if s.external and s.name not in feeds:
            arrays[s.name] = DeviceArray.from_numpy(device, np.zeros(s.shape, s.dtype))
    for k, v in arrays.items():
        prog.bind(k, v)
    for e in entries:
        prog.run(e)
    device.synchronize()
    return {k: v.numpy() for k, v in arrays.items() if k not in feeds}


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(op.name for op in registry.all_ops()))
def test_operator_on_gpu_equals_cpu(gpu, name):
    op = registry.get(name)
    try:
        cpu_spec, info, given = _compile(op, "llvm")
    except Exception as err:  # noqa: BLE001 - test_every_operator_is_covered checks it runs inside other graphs
        pytest.skip("no standalone sample instance (it runs in other operators' gradients): %s: %s"
                    % (type(err).__name__, err))
    cuda_spec, cuda_info, _ = _compile(op, "cuda")
    feeds = _feeds(cpu_spec, info, given)
    want = _run(cpu_spec, feeds, None)
    got = _run(cuda_spec, feeds, cuda.device(gpu.device_id))
    assert sorted(got) == sorted(want)
    for k, w in want.items():
        g = got[k]
        if w.dtype.kind == "f":
            rtol, atol = TOL[w.dtype.name]
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg="%s: %s" % (name, k))
        else:
            np.testing.assert_array_equal(g, w, err_msg="%s: %s" % (name, k))
