"""The local KVStore (MXNet 1.9.1's KVStoreLocal semantics; the conformance scenarios 085
and 086 cover the rest against recorded MXNet output)."""
import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError


def test_updater_sees_key_sum_and_stored_value():
    kv = mx.kv.create("device")
    seen = []

    def update(key, merged, stored):
        seen.append((key, merged.asnumpy().tolist(), stored.asnumpy().tolist()))
        stored += merged * 2

    kv._set_updater(update)
    kv.init("w", mx.nd.ones((2,)))
    kv.push("w", [mx.nd.array([1.0, 2.0]), mx.nd.array([3.0, 4.0])])
    out = mx.nd.zeros((2,))
    kv.pull("w", out=out)
    assert seen == [("w", [4.0, 6.0], [1.0, 1.0])]
    np.testing.assert_allclose(out.asnumpy(), [9.0, 13.0])
    assert kv.type == "device" and kv.is_capable("optimizer")


def test_set_optimizer_and_states(tmp_path):
    kv = mx.kv.create("local")
    kv.set_optimizer(mx.optimizer.SGD(learning_rate=0.1, momentum=0.9))
    kv.init(0, mx.nd.zeros((3,)))
    for _ in range(2):
        kv.push(0, mx.nd.ones((3,)))
    w = mx.nd.zeros((3,))
    kv.pull(0, out=w)
    np.testing.assert_allclose(w.asnumpy(), [-0.29] * 3, rtol=1e-6)  # momentum -0.1, then -0.19
    path = str(tmp_path / "states")
    kv.save_optimizer_states(path)
    kv2 = mx.kv.create("local")
    kv2.set_optimizer(mx.optimizer.SGD(learning_rate=0.1, momentum=0.9))
    kv2.load_optimizer_states(path)
    kv2.init(0, w)
    kv2.push(0, mx.nd.ones((3,)))
    kv.push(0, mx.nd.ones((3,)))
    a, b = mx.nd.zeros((3,)), mx.nd.zeros((3,))
    kv.pull(0, out=a)
    kv2.pull(0, out=b)
    np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-6)  # the momentum travelled with the file


def test_errors_name_key_and_shapes():
    kv = mx.kv.create("local")
    kv.init(1, mx.nd.zeros((2, 3)))
    with pytest.raises(MXNetError, match=r"key 1 holds shape \(2, 3\), but value 0 has shape \(3, 2\)"):
        kv.push(1, mx.nd.zeros((3, 2)))
    with pytest.raises(MXNetError, match="key 2 has not been initialized"):
        kv.pull(2, out=mx.nd.zeros((1,)))
    with pytest.raises(MXNetError, match="already initialized"):
        kv.init(1, mx.nd.zeros((2, 3)))
    with pytest.raises(MXNetError, match="cannot be mixed"):
        kv.push("x", mx.nd.zeros((1,)))
    with pytest.raises(MXNetError, match="2 keys need a list of 2 values"):
        kv.push([1, 1], mx.nd.zeros((2, 3)))
    with pytest.raises(MXNetError, match="out is required"):
        kv.pull(1)
    with pytest.raises(MXNetError, match="ints or strs"):
        kv.init(1.5, mx.nd.zeros((1,)))
    with pytest.raises(MXNetError, match="no optimizer"):
        kv.save_optimizer_states("never-written")
    with pytest.raises(MXNetError, match="unknown KVStore type 'nope'"):
        mx.kv.create("nope")
    with pytest.raises(TypeError):
        mx.kv.create(3)
    with pytest.raises(NotImplementedError, match="row_sparse"):
        kv.row_sparse_pull(1, out=mx.nd.zeros((2, 3)), row_ids=mx.nd.array([0]))


def test_registered_store_and_broadcast():
    @mx.kv.KVStoreBase.register
    class HalfStore(mx.kv.TestStore):
        def pushpull(self, key, value, out=None, priority=0):
            super().pushpull(key, value, out, priority)
            for o in out:
                o[:] = o / 2
    try:
        kv = mx.kv.create("HalfStore")
        outs = [mx.nd.zeros((2,)), mx.nd.zeros((2,))]
        kv.pushpull(0, [mx.nd.ones((2,)), mx.nd.ones((2,)) * 3], out=outs)
        for o in outs:
            np.testing.assert_allclose(o.asnumpy(), [2.0, 2.0])
    finally:
        del mx.kv.KVStoreBase.kv_registry["halfstore"]
    kv = mx.kv.create("local")
    outs = [mx.nd.zeros((2,), ctx=mx.cpu(i)) for i in range(3)]
    kv.broadcast("b", mx.nd.array([1.0, 2.0]), out=outs)
    assert [str(o.context) for o in outs] == ["cpu(0)", "cpu(1)", "cpu(2)"]
    for o in outs:
        np.testing.assert_allclose(o.asnumpy(), [1.0, 2.0])
