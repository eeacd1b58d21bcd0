"""Symbol API: names, listing, attributes, inference, composition, copies."""
import copy

import numpy as np
import pytest

import kiln as mx


def test_auto_names_and_scalar_op_names():
    with mx.name.NameManager():
        a, b = mx.sym.Variable("a"), mx.sym.Variable("b")
        assert (a + b).name == "_plus0"
        assert (a + 1).name == "_plusscalar0"
        assert (2 - a).name == "_rminusscalar0"
        assert (2 ** a).name == "_rpower_scalar0"
        assert (-a).name == "_mulscalar0"
        assert (a <= 1).name == "_lesser_equal_scalar0"
        fc = mx.sym.FullyConnected(a, num_hidden=2)
        assert fc.name == "fullyconnected0"
        assert fc.list_arguments() == ["a", "fullyconnected0_weight", "fullyconnected0_bias"]
        assert mx.sym.flatten(a).name == "flatten0"


def test_prefix_and_attr_scope():
    data = mx.sym.Variable("data")
    with mx.name.Prefix("blk_"):
        fc = mx.sym.FullyConnected(data, num_hidden=2, name="head")
    assert fc.name == "blk_head"
    assert fc.list_arguments() == ["data", "blk_head_weight", "blk_head_bias"]
    with mx.AttrScope(ctx_group="dev1"):
        q = mx.sym.Variable("q")
    assert q.attr("ctx_group") == "dev1"
    w = mx.sym.Variable("w", shape=(2, 3), lr_mult=2.0, wd_mult=0.5, dtype="float64")
    assert w.attr("__shape__") == "(2, 3)" and w.attr("__lr_mult__") == "2.0" and w.attr("__wd_mult__") == "0.5"
    assert w.attr("missing") is None
    assert w.infer_type()[0] == [np.float64]
    assert w.infer_shape()[0] == [(2, 3)]


def test_internals_children_getitem_group():
    data = mx.sym.Variable("data")
    fc1 = mx.sym.FullyConnected(data, num_hidden=4, name="fc1")
    act = mx.sym.Activation(fc1, act_type="relu", name="relu1")
    fc2 = mx.sym.FullyConnected(act, num_hidden=2, name="fc2")
    internals = fc2.get_internals()
    assert internals.list_outputs() == ["data", "fc1_weight", "fc1_bias", "fc1_output", "relu1_output",
                                        "fc2_weight", "fc2_bias", "fc2_output"]
    assert internals["relu1_output"].list_arguments() == ["data", "fc1_weight", "fc1_bias"]
    assert internals[3].list_outputs() == ["fc1_output"]
    assert fc2.get_children().list_outputs() == ["relu1_output", "fc2_weight", "fc2_bias"]
    assert data.get_children() is None
    g = mx.sym.Group([fc1, fc2])
    assert g.list_outputs() == ["fc1_output", "fc2_output"] and len(g) == 2
    assert repr(fc1) == "<Symbol fc1>"
    with pytest.raises(ValueError):
        internals["nope"]


def test_infer_shape_full_partial_and_insufficient():
    a = mx.sym.Variable("a")
    f = mx.sym.FullyConnected(a, num_hidden=7, name="f")
    assert f.infer_shape() == (None, None, None)
    assert f.infer_shape_partial() == ([(), (), ()], [()], [])
    assert f.infer_shape_partial(f_weight=(7, 5)) == ([(), (7, 5), ()], [()], [])
    assert f.infer_shape(a=(3, 2, 4)) == ([(3, 2, 4), (7, 8), (7,)], [(3, 7)], [])
    b = mx.sym.Variable("b")
    s = a * b + a
    assert s.infer_shape(a=(4, 5)) == ([(4, 5), (4, 5)], [(4, 5)], [])
    assert mx.sym.broadcast_add(a, b).infer_shape(a=(2, 1, 3), b=(1, 4, 3))[1] == [(2, 4, 3)]
    assert s.infer_shape((4, 5))[1] == [(4, 5)]


def test_infer_type():
    a, b = mx.sym.Variable("a"), mx.sym.Variable("b")
    s = a + b * 2
    assert s.infer_type(a="float64") == ([np.float64, np.float64], [np.float64], [])
    assert s.infer_type() == (None, None, None)
    assert s.infer_type_partial() == ([None, None], [None], [])
    assert mx.sym.cast(a, dtype="int32").infer_type(a="float64") == ([np.float64], [np.int32], [])


def test_compose_copies_and_renames():
    data = mx.sym.Variable("data")
    net1 = mx.sym.FullyConnected(data, num_hidden=4, name="fc1")
    x = mx.sym.Variable("x")
    net2 = mx.sym.FullyConnected(mx.sym.Activation(x, act_type="relu"), num_hidden=2, name="fc2")
    composed = net2(x=net1, name="composed")
    assert composed.list_arguments() == ["data", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"]
    assert composed.list_outputs() == ["composed_output"]
    assert net2.list_arguments() == ["x", "fc2_weight", "fc2_bias"]
    assert copy.deepcopy(composed).tojson() == composed.tojson()
    z = mx.sym.Variable("z")
    e = mx.sym.exp(z, name="ex")(mx.sym.Variable("q") * 2)
    assert e.list_arguments() == ["q"]
    np.testing.assert_allclose(e.eval(q=mx.nd.array([0.0, 0.5]))[0].asnumpy(), np.exp([0.0, 1.0]), rtol=1e-6)


def test_operator_attributes_and_attr_dict():
    data = mx.sym.Variable("data")
    fc = mx.sym.FullyConnected(data, num_hidden=3, name="fc3", attr={"__mood__": "calm"})
    assert fc.attr("__mood__") == "calm"
    assert fc.attr("num_hidden") == "3"
    assert sorted(fc.attr_dict()) == ["fc3", "fc3_bias", "fc3_weight"]
    assert "Op:FullyConnected, Name=fc3" in fc.debug_str()


def test_multi_output_names_and_len():
    x = mx.sym.Variable("x")
    assert mx.sym.Variable("y").list_outputs() == ["y"]
    s = mx.sym.Group([x * 2, x + 1])
    assert [o.name for o in s] == [s[0].name, s[1].name]


def test_nd_generated_ops_match_symbol():
    x = np.random.RandomState(0).uniform(0.5, 2.0, (2, 3)).astype(np.float32)
    nd_out = mx.nd.log(mx.nd.array(x))
    sym_out = mx.sym.log(mx.sym.Variable("x")).eval(x=mx.nd.array(x))[0]
    np.testing.assert_array_equal(nd_out.asnumpy(), sym_out.asnumpy())
    np.testing.assert_allclose(mx.nd.sum(mx.nd.array(x), axis=1).asnumpy(), x.sum(1), rtol=1e-6)
    assert repr(mx.nd.array([[1, 2], [3, 4]])).endswith("<NDArray 2x2 @cpu(0)>")


def test_hidden_attribute_keys_are_stored_like_mxnet():
    with mx.AttrScope(ctx_group="dev1", lr_mult="2"):
        q = mx.sym.Variable("q")
        fc = mx.sym.FullyConnected(q, num_hidden=2, name="fc")
    assert q.attr("ctx_group") == "dev1" and q.attr("__ctx_group__") == "dev1"
    assert '"__lr_mult__": "2"' in fc.tojson()
    assert '"ctx_group"' not in fc.tojson()
    with pytest.raises(mx.base.MXNetError, match="weight_lr_mult"):
        mx.sym.FullyConnected(q, num_hidden=2, attr={"weight_lr_mult": "0.1"})


def test_save_and_load_file(tmp_path):
    s = mx.sym.exp(mx.sym.Variable("données"), name="ex")
    path = tmp_path / "net-symbol.json"
    s.save(str(path))
    assert mx.sym.load(str(path)).tojson() == s.tojson()


def test_operator_methods_on_symbols_match_ndarray():
    x = mx.sym.Variable("x")
    y = mx.sym.broadcast_add((x.reshape((-1, 2)).exp().sum(axis=1) == 0).astype("float32"), x.T.flatten().mean())
    xv = mx.nd.array(np.arange(6, dtype=np.float32).reshape(2, 3) / 10)
    want = (xv.reshape((-1, 2)).exp().sum(axis=1) == 0).astype("float32") + xv.T.flatten().mean()
    got = y.eval(ctx=mx.cpu(), x=xv)[0]
    np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-6)
