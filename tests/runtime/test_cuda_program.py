"""Whole programs compiled for CUDA (``compile_program(backend='cuda')``) run by
``runtime.cuda_program.CudaProgram``: forward and backward of several graphs must equal the
LLVM program's results. Every test runs on the CPU emulation of CUDA (tests/cuda_emulator,
so CI checks the generated CUDA and the runner without a GPU) and, where this machine has
one, on a real GPU through the driver API (``runtime/cuda.py``)."""
import numpy as np
import pytest

import kiln as mx
from kiln.compiler.pipeline import compile_program
from kiln.runtime import MXNetError
from kiln.runtime.cuda_program import CudaProgram, DeviceArray
from kiln.runtime.program import LoadedProgram

S = mx.sym


def _emulated():
    emulator = pytest.importorskip("tests.cuda_emulator.device")
    try:
        return emulator.EmulatedDevice()
    except Exception as err:  # noqa: BLE001 - no C++ compiler: nothing to emulate with
        pytest.skip("CUDA emulation unavailable: %s" % err)


def _gpu():
    if mx.context.num_gpus() == 0:
        pytest.skip("no GPU")
    from kiln.runtime import cuda
    return cuda.device(0)


DEVICES = {"emulated": _emulated, "gpu": _gpu}


def _mlp():
    x = S.Variable("data")
    h = S.Activation(S.FullyConnected(x, num_hidden=24, name="fc1"), act_type="relu")
    return S.SoftmaxOutput(S.FullyConnected(h, num_hidden=5, name="fc2"), name="softmax"), {"data": (6, 10)}


def _cnn():
    x = S.Variable("data")
    c = S.Convolution(x, kernel=(3, 3), num_filter=4, pad=(1, 1), name="conv")
    b = S.BatchNorm(c, fix_gamma=False, use_global_stats=True, name="bn")
    p = S.Pooling(S.Activation(b, act_type="relu"), kernel=(2, 2), stride=(2, 2), pool_type="max")
    return S.mean(S.FullyConnected(S.Flatten(p), num_hidden=3, name="fc"), axis=1), {"data": (2, 3, 8, 8)}


def _reductions():
    x = S.Variable("data")
    return S.Group([S.sum(S.exp(x), axis=1), S.max(x, axis=0), S.log_softmax(x, axis=-1), S.sort(x, axis=1),
                    S.argmax(x, axis=1)]), {"data": (5, 300)}


GRAPHS = {"mlp": _mlp, "cnn": _cnn, "reductions": _reductions}


def _programs(sym, inputs, grads):
    names = sym.list_arguments() + sym.list_auxiliary_states()
    arg_shapes, _, aux_shapes = sym.infer_shape(**inputs)
    shapes = dict(zip(names, arg_shapes + aux_shapes))
    types = {k: "float32" for k in shapes}
    grad_req = {k: "write" for k in sym.list_arguments() if grads and k not in ("softmax_label",)}
    cpu, info = compile_program(sym._outputs, shapes, types, grad_req)
    cuda, cuda_info = compile_program(sym._outputs, shapes, types, grad_req, backend="cuda")
    assert cuda_info["outputs"] == info["outputs"] and cuda_info["grads"] == info["grads"]
    return shapes, cpu, cuda, info


def _feeds(spec, shapes, rng):
    feeds = {}
    for s in spec.slots:
        if s.external and s.name in shapes:
            v = rng.standard_normal(s.shape).astype(s.dtype)
            feeds[s.name] = np.abs(v) + 0.5 if s.name.endswith("_var") else v
        elif s.external and s.name.startswith("__head_grad"):
            feeds[s.name] = rng.standard_normal(s.shape).astype(s.dtype)
    if "softmax_label" in feeds:
        feeds["softmax_label"] = rng.integers(0, 5, feeds["softmax_label"].shape).astype(np.float32)
    return feeds


def _run_cpu(spec, feeds):
    prog = LoadedProgram(spec)
    outs = {s.name: np.empty(s.shape, s.dtype) for s in spec.slots if s.external and s.name not in feeds}
    for k, v in {**feeds, **outs}.items():
        prog.bind(k, v)
    for entry in ("forward", "backward"):
        prog.run(entry)
    return outs


def _run_cuda(spec, feeds, device):
    prog = CudaProgram(spec, device)
    arrays = {k: DeviceArray.from_numpy(device, v) for k, v in feeds.items()}
    arrays.update({s.name: DeviceArray.empty(device, s.shape, s.dtype) for s in spec.slots
                   if s.external and s.name not in feeds})
    for k, v in arrays.items():
        prog.bind(k, v)
    for entry in ("forward", "backward"):
        prog.run(entry)
    device.synchronize()
    return {k: arrays[k].numpy() for k in arrays if k not in feeds}


@pytest.mark.parametrize("device", sorted(DEVICES))
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_cuda_program_equals_llvm_program(graph, device):
    dev = DEVICES[device]()
    sym, inputs = GRAPHS[graph]()
    shapes, cpu, cuda, info = _programs(sym, inputs, grads=graph != "reductions")
    feeds = _feeds(cpu, shapes, np.random.default_rng(0))
    want = _run_cpu(cpu, feeds)
    got = _run_cuda(cuda, feeds, dev)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=2e-5, atol=2e-5, err_msg=name)


def test_binding_errors():
    dev = _emulated()
    sym, inputs = _mlp()
    shapes, _, cuda, _ = _programs(sym, inputs, grads=False)
    prog = CudaProgram(cuda, dev)
    with pytest.raises(MXNetError, match="no external slot 'nope'"):
        prog.bind("nope", DeviceArray.empty(dev, (1,), "float32"))
    with pytest.raises(MXNetError, match="needs an array on the program's device"):
        prog.bind("data", np.zeros(shapes["data"], np.float32))
    with pytest.raises(MXNetError, match="expects float32 of rank 2"):
        prog.bind("data", DeviceArray.empty(dev, (6,), "float32"))
    with pytest.raises(MXNetError, match="arrays not bound"):
        prog.run("forward")
    for s in cuda.slots:
        if s.external:
            prog.bind(s.name, DeviceArray.empty(dev, s.shape, s.dtype))
    prog.bind("data", DeviceArray.empty(dev, (7, 10), "float32"))
    with pytest.raises(MXNetError, match=r"slot 'data' expects shape \(6, 10\), got \(7, 10\)"):
        prog.run("forward")
    with pytest.raises(MXNetError, match="no entry 'sideways'"):
        prog.run("sideways")


def test_size_classes():
    from kiln.runtime.cuda import LARGE_FROM, size_class
    assert size_class(1) == 512 and size_class(513) == 1024 and size_class(LARGE_FROM) == LARGE_FROM
    assert size_class(LARGE_FROM + 1) == 2 * LARGE_FROM and size_class(3 << 20) == 4 << 20
