"""Array-creation operators (_zeros, _ones, _full, _arange, _eye, _linspace) in graphs."""
from __future__ import annotations

import json

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from tests.op_harness import check_forward

CASES = [
    ("_zeros", dict(shape=(2, 3))),
    ("_zeros", dict(shape=(0, 4), dtype="int32")),
    ("_ones", dict(shape=(5,), dtype="float64")),
    ("_full", dict(shape=(3, 1, 2), value=-2.5)),
    ("_full", dict(shape=(4,), value=7, dtype="int64")),
    ("_arange", dict(start=5)),
    ("_arange", dict(start=1, stop=4, step=0.5, repeat=2)),
    ("_arange", dict(start=10, stop=-3, step=-2.5, dtype="float64")),
    ("_arange", dict(start=0, stop=7, dtype="int32")),
    ("_eye", dict(N=3)),
    ("_eye", dict(N=3, M=5, k=-1, dtype="int32")),
    ("_linspace", dict(start=0, stop=1, num=5)),
    ("_linspace", dict(start=2, stop=-1, num=4, endpoint=False, dtype="float64")),
    ("_linspace", dict(start=2, stop=3, num=1)),
]


@pytest.mark.parametrize("name,attrs", CASES, ids=["%s%d" % (c[0], i) for i, c in enumerate(CASES)])
def test_matches_numpy(name, attrs):
    check_forward(name, [], attrs)


def test_values_pinned():
    assert mx.nd._arange(start=1, stop=4, step=0.5, repeat=2).asnumpy().tolist() == \
        [1, 1, 1.5, 1.5, 2, 2, 2.5, 2.5, 3, 3, 3.5, 3.5]
    assert mx.nd._linspace(start=0, stop=1, num=5, endpoint=False).asnumpy().tolist() == \
        pytest.approx([0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_array_equal(mx.nd._eye(N=2, M=3, k=1).asnumpy(), np.eye(2, 3, 1))


def test_symbol_functions_in_a_graph_and_gradient():
    x = mx.sym.var("x")
    y = mx.sym.broadcast_mul(x, mx.sym.arange(3)) + mx.sym.ones((2, 3)) + mx.sym.full((2, 3), 0.5)
    xv = np.random.RandomState(0).rand(2, 3).astype(np.float32)
    ex = y.simple_bind(mx.cpu(), x=(2, 3))
    ex.forward(is_train=True, x=mx.nd.array(xv))
    np.testing.assert_allclose(ex.outputs[0].asnumpy(), xv * np.arange(3) + 1.5, rtol=1e-6)
    ex.backward(mx.nd.ones((2, 3)))
    np.testing.assert_allclose(ex.grad_dict["x"].asnumpy(), np.tile(np.arange(3.0), (2, 1)))


def test_json_attributes_as_mxnet_writes_them():
    """Recorded from MXNet 1.9.1's mx.sym.zeros/arange/eye ... tojson()."""
    want = [
        (mx.sym.zeros((2, 3)), "_zeros", {"dtype": "float32", "shape": "(2, 3)"}),
        (mx.sym.ones(4, dtype="int32"), "_ones", {"dtype": "int32", "shape": "4"}),
        (mx.sym.full((2,), 3.5), "_full", {"dtype": "float32", "shape": "(2,)", "value": "3.5"}),
        (mx.sym.arange(5), "_arange", {"dtype": "float32", "infer_range": "False", "repeat": "1", "start": "5",
                                       "step": "1.0", "stop": "None"}),
        (mx.sym.eye(3, k=1), "_eye", {"M": "0", "N": "3", "dtype": "float32", "k": "1"}),
        (mx.sym.linspace(0, 1, 5), "_linspace", {"dtype": "float32", "endpoint": "True", "num": "5", "start": "0",
                                                 "stop": "1"}),
    ]
    for sym, op, attrs in want:
        node = json.loads(sym.tojson())["nodes"][-1]
        assert (node["op"], node["attrs"]) == (op, attrs)
        again = mx.sym.load_json(sym.tojson())
        np.testing.assert_array_equal(again.eval()[0].asnumpy(), sym.eval()[0].asnumpy())


def test_bad_ranges_are_refused_before_running():
    with pytest.raises(MXNetError, match="invalid range"):
        mx.nd._arange(start=3, stop=0)
    with pytest.raises(MXNetError, match="invalid range"):
        mx.sym.arange(0, 5, step=0).eval()
    with pytest.raises(MXNetError, match="negative"):
        mx.nd._linspace(start=0, stop=1, num=-1)
    with pytest.raises(NotImplementedError, match="infer_range"):
        mx.sym.arange(0, infer_range=True).eval()


def test_hybridized_block_uses_F_creation():
    class AddRange(mx.gluon.HybridBlock):
        def hybrid_forward(self, F, x):
            return F.broadcast_add(x, F.arange(4).reshape((1, 4))) * F.ones((2, 4))

    net = AddRange()
    x = mx.nd.array(np.ones((2, 4)))
    want = net(x).asnumpy()
    net.hybridize()
    np.testing.assert_array_equal(net(x).asnumpy(), want)
    np.testing.assert_array_equal(want, np.ones((2, 4)) + np.arange(4))
