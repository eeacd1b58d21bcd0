"""Bad input gives an MXNetError naming the operator, node and values, before any kernel runs."""
import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError


def test_shape_mismatch_names_node_and_shapes():
    a, b = mx.sym.Variable("a"), mx.sym.Variable("b")
    s = mx.sym.elemwise_add(a, b, name="adder")
    with pytest.raises(MXNetError, match=r"elemwise_add.*adder.*\(2, 3\).*\(3, 2\)"):
        s.infer_shape(a=(2, 3), b=(3, 2))
    with pytest.raises(MXNetError, match="adder"):
        s.bind(mx.cpu(), {"a": mx.nd.ones((2, 3)), "b": mx.nd.ones((3, 2))})


def test_dtype_mismatch():
    a, b = mx.sym.Variable("a"), mx.sym.Variable("b")
    with pytest.raises(MXNetError, match="float32.*float64|float64.*float32"):
        (a + b).infer_type(a="float32", b="float64")


def test_missing_argument_is_named():
    fc = mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=2, name="fc")
    with pytest.raises(MXNetError, match="fc_bias"):
        fc.bind(mx.cpu(), {"data": mx.nd.ones((2, 3)), "fc_weight": mx.nd.ones((2, 3))})


def test_unknown_operator_attribute_and_ill_typed_attribute():
    data = mx.sym.Variable("data")
    with pytest.raises(MXNetError, match="FullyConnected.*'fc'.*num_hiden"):
        mx.sym.FullyConnected(data, num_hiden=3, name="fc")
    with pytest.raises(MXNetError, match="num_hidden='three'"):
        mx.sym.FullyConnected(data, num_hidden="three", name="fc")
    with pytest.raises(TypeError):
        mx.sym.FullyConnected(data, num_hidden=[3, 4], name="fc")
    with pytest.raises(MXNetError, match="act_type"):
        mx.sym.Activation(data, act_type="swish")
    with pytest.raises(MXNetError, match="required attribute 'num_hidden'"):
        mx.sym.FullyConnected(data, name="fc")


def test_unknown_operator_in_json():
    js = '{"nodes": [{"op": "null", "name": "x", "inputs": []}, {"op": "NoSuchOp", "name": "y", "inputs": [[0, 0, 0]]}], "arg_nodes": [0], "heads": [[1, 0, 0]]}'
    with pytest.raises(MXNetError, match="NoSuchOp"):
        mx.sym.load_json(js)


def test_malformed_json():
    with pytest.raises(MXNetError, match="malformed"):
        mx.sym.load_json("{not json")
    with pytest.raises(MXNetError):
        mx.sym.load_json('{"nodes": [{"op": "null", "name": "x", "inputs": []}], "heads": [[5, 0, 0]]}')


def test_wrong_array_shape_at_forward_is_rejected_before_running():
    x = mx.sym.Variable("x")
    ex = (x * 2).simple_bind(mx.cpu(), x=(2, 3))
    with pytest.raises(MXNetError, match=r"\(3, 2\)"):
        ex.forward(x=mx.nd.ones((3, 2)))


def test_runtime_rejects_bad_buffers():
    from kiln.runtime.program import LoadedProgram
    x = mx.sym.Variable("x")
    ex = (x + 1).simple_bind(mx.cpu(), x=(4,))
    prog = ex._program
    assert isinstance(prog, LoadedProgram)
    with pytest.raises(MXNetError, match="shape"):
        prog.bind("x", np.zeros(5, np.float32))
    with pytest.raises(MXNetError, match="dtype"):
        prog.bind("x", np.zeros(4, np.float64))
    with pytest.raises(MXNetError, match="contiguous"):
        prog.bind("x", np.zeros(8, np.float32)[::2])


def test_bad_gradient_array_shape():
    x = mx.sym.Variable("x")
    with pytest.raises(MXNetError, match="gradient array"):
        (x * 2).bind(mx.cpu(), {"x": mx.nd.ones((2,))}, args_grad={"x": mx.nd.ones((3,))})


def test_bad_grad_req():
    x = mx.sym.Variable("x")
    with pytest.raises(MXNetError, match="grad_req"):
        (x * 2).bind(mx.cpu(), {"x": mx.nd.ones((2,))}, args_grad={"x": mx.nd.ones((2,))}, grad_req="sometimes")


def test_symbol_has_no_truth_value():
    with pytest.raises(NotImplementedError):
        bool(mx.sym.Variable("x"))
