"""Executors and Gluon blocks on ``mx.gpu(0)``: compiled to CUDA, fused and memory-planned,
with results equal to the same program on the CPU."""
import numpy as np
import pytest

import kiln as mx
from kiln import gluon
from kiln.base import MXNetError
from kiln.gluon import nn


def _mlp():
    data = mx.sym.var("data")
    net = mx.sym.FullyConnected(data, num_hidden=8, name="fc1")
    net = mx.sym.BatchNorm(net, name="bn")
    net = mx.sym.Activation(net, act_type="relu")
    net = mx.sym.FullyConnected(net, num_hidden=3, name="fc2")
    return mx.sym.SoftmaxOutput(net, name="softmax")


def _run(ctx, grad_req="write", steps=2):
    ex = _mlp().simple_bind(ctx, data=(4, 5), grad_req=grad_req)
    rs = np.random.RandomState(0)
    for name, arr in sorted(ex.arg_dict.items()):
        arr[:] = np.array([0, 1, 2, 1]) if name == "softmax_label" else rs.uniform(-1, 1, arr.shape)
    for _ in range(steps):
        ex.forward(is_train=True)
        ex.backward()
    result = {"out": ex.outputs[0].asnumpy()}
    result.update({"grad_" + n: g.asnumpy() for n, g in ex.grad_dict.items()})
    result.update({"aux_" + n: a.asnumpy() for n, a in ex.aux_dict.items()})
    ex.forward(is_train=False, data=np.ones((4, 5), np.float32))
    result["infer"] = ex.outputs[0].asnumpy()
    return ex, result


@pytest.mark.parametrize("grad_req", ["write", "add"])
def test_executor_matches_cpu(gpu, grad_req):
    _, want = _run(mx.cpu(), grad_req)
    ex, got = _run(gpu, grad_req)
    assert ex.outputs[0].context == gpu and all(g.context == gpu for g in ex.grad_arrays if g is not None)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)
    report = ex.compile_report()
    assert report.kernels and all(k["backend"] == "cuda" for k in report.kernels)


def test_bind_refuses_arrays_on_another_device(gpu):
    x = mx.sym.var("x")
    with pytest.raises(MXNetError, match="in cpu\\(0\\) while binding with ctx=gpu\\(0\\)"):
        (x * 2).bind(gpu, {"x": mx.nd.ones((2,))})
    ex = (x * 2).bind(gpu, {"x": mx.nd.ones((2,), ctx=gpu)})
    np.testing.assert_array_equal(ex.forward()[0].asnumpy(), [2, 2])
    np.testing.assert_array_equal(ex.forward(x=mx.nd.array([1, 3]))[0].asnumpy(), [2, 6])  # fed from the host
    np.testing.assert_array_equal(ex.forward(x=mx.nd.array([4, 5], ctx=gpu))[0].asnumpy(), [8, 10])  # on the device


def _train_gluon(ctx, hybridize):
    mx.random.seed(1)
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu"), nn.BatchNorm(), nn.Dropout(0.0), nn.Dense(4))
    net.initialize(mx.init.Xavier(), ctx=ctx)
    if hybridize:
        net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rs = np.random.RandomState(2)
    x = mx.nd.array(rs.randn(8, 10), ctx=ctx)
    y = mx.nd.array(np.arange(8) % 4, ctx=ctx)
    losses = []
    for _ in range(3):
        with mx.autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(8)
        losses.append(loss.asnumpy())
    params = [p.data(ctx).asnumpy() for p in net.collect_params().values()]
    return np.array(losses), net(x).asnumpy(), params


@pytest.mark.parametrize("hybridize", [True, False])
def test_gluon_training_matches_cpu(gpu, hybridize):
    want = _train_gluon(mx.cpu(), hybridize)
    got = _train_gluon(gpu, hybridize)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-4, atol=1e-5)
    assert len(got[2]) == len(want[2]) == 8
    for k, (g, w) in enumerate(zip(got[2], want[2])):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg="parameter %d" % k)


def test_reset_ctx_moves_parameters(gpu):
    net = nn.Dense(3, in_units=4)
    net.initialize(ctx=mx.cpu())
    w = net.weight.data().asnumpy()
    net.collect_params().reset_ctx(gpu)
    assert net.weight.data(gpu).context == gpu and net.weight.list_ctx() == [gpu]
    np.testing.assert_array_equal(net.weight.data(gpu).asnumpy(), w)
    net.hybridize()
    out = net(mx.nd.ones((2, 4), ctx=gpu))
    assert out.context == gpu
    np.testing.assert_allclose(out.asnumpy(), np.ones((2, 4)) @ w.T + net.bias.data(gpu).asnumpy(), rtol=1e-5)


class _RejectsFused:
    """A device whose compiler refuses any source with a fused kernel (as NVRTC may refuse a
    kernel it cannot compile: too many registers, a compiler bug)."""

    def __init__(self, device):
        self._device = device
        self.rejected = 0

    def __getattr__(self, name):
        return getattr(self._device, name)

    def module(self, source, name):
        from kiln.runtime.nvrtc import NVRTCCompileError
        if "fused_" in source:
            self.rejected += 1
            raise NVRTCCompileError("NVRTC could not compile CUDA kernel %r (test)" % name)
        return self._device.module(source, name)


def test_rejected_fused_kernels_fall_back_to_unfused(gpu, caplog):
    from kiln.runtime import cuda
    device = _RejectsFused(cuda.device(0))
    previous = cuda.install_devices([device])
    try:
        x = mx.sym.var("x")
        y = mx.sym.relu(x * 2 + 1) * 3
        ex = y.simple_bind(gpu, x=(5,), grad_req="null")
        out = ex.forward(x=np.arange(-2, 3, dtype=np.float32))[0].asnumpy()
    finally:
        cuda.install_devices(previous)
    np.testing.assert_allclose(out, np.maximum(np.arange(-2, 3) * 2 + 1, 0) * 3)
    assert device.rejected == 1
    assert len(ex.compile_report().kernels) == 4  # one kernel per operator
    assert "compiling without fusion" in caplog.text
