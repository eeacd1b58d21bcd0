"""Two GPUs (two emulated devices without real ones): copies between them, and data-parallel
Gluon training with split_and_load and a 'device' or 'local' KVStore equal to one CPU
training on the whole batch."""
import numpy as np
import pytest

import kiln as mx
from kiln import gluon
from kiln.gluon import nn
from kiln.runtime import cuda

from .conftest import REAL


@pytest.fixture
def two_gpus(gpu):
    if REAL:
        if mx.context.num_gpus() < 2:
            pytest.skip("one GPU")
        yield [mx.gpu(0), mx.gpu(1)]
        return
    from tests.cuda_emulator.device import EmulatedDevice
    previous = cuda.install_devices([cuda.device(0), EmulatedDevice()])
    try:
        yield [mx.gpu(0), mx.gpu(1)]
    finally:
        mx.nd.waitall()
        cuda.install_devices(previous)


def test_copies_between_gpus(two_gpus):
    g0, g1 = two_gpus
    x = mx.nd.array(np.arange(6, dtype=np.float32).reshape(2, 3), ctx=g0)
    y = x.as_in_context(g1)
    assert y.context == g1
    np.testing.assert_array_equal((y * 2).asnumpy(), np.arange(6).reshape(2, 3) * 2)
    z = mx.nd.zeros((2, 3), ctx=g0)
    (y + 1).copyto(z)
    np.testing.assert_array_equal(z.asnumpy(), np.arange(6).reshape(2, 3) + 1)
    parts = gluon.utils.split_and_load(np.arange(8, dtype=np.float32).reshape(4, 2), two_gpus)
    assert [p.context for p in parts] == two_gpus
    np.testing.assert_array_equal(parts[1].asnumpy(), [[4, 5], [6, 7]])


def _train(ctxs, kvstore):
    mx.random.seed(3)
    net = nn.HybridSequential()
    net.add(nn.Dense(8, activation="tanh"), nn.Dense(3))
    net.initialize(mx.init.Xavier(), ctx=ctxs)
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5, "momentum": 0.9},
                            kvstore=kvstore)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    rs = np.random.RandomState(4)
    x, y = rs.randn(8, 5).astype(np.float32), (np.arange(8) % 3).astype(np.float32)
    for _ in range(3):
        xs = gluon.utils.split_and_load(x, ctxs)
        ys = gluon.utils.split_and_load(y, ctxs)
        with mx.autograd.record():
            losses = [loss_fn(net(a), b) for a, b in zip(xs, ys)]
        for loss in losses:
            loss.backward()
        trainer.step(8)
    return [p.data(ctxs[-1]).asnumpy() for p in net.collect_params().values()]


@pytest.mark.parametrize("kvstore", ["device", "local"])
def test_data_parallel_training_matches_one_cpu(two_gpus, kvstore):
    want = _train([mx.cpu()], kvstore)
    got = _train(two_gpus, kvstore)
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg="parameter %d" % k)
