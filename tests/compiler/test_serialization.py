"""MXNet symbol JSON: byte layout of the writer, round trips, legacy files, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from kiln.compiler.graph import Entry, Node
from kiln.compiler.ops import registry
from kiln.compiler.ops.registry import OpDef

# ---------------------------------------------------------------------------
# helpers


def _sym(outputs):
    return mx.sym.Symbol(outputs)


def _var(name, **attrs):
    return Node(None, name, attrs)


@pytest.fixture
def fake_ops(monkeypatch):
    """Two operators MXNet has and this test needs regardless of what kiln registers:
    ``_t_split`` (2 outputs, 1 data input) and ``_t_bn`` (BatchNorm-like: inputs
    data, gamma, beta, moving_mean, moving_var; the last two auxiliary; 3 outputs,
    1 visible)."""
    split = OpDef("_t_split", kind="opaque", outputs=2)
    bn = OpDef("_t_bn", kind="opaque", inputs=("data", "gamma", "beta", "moving_mean", "moving_var"),
               outputs=3, visible=1, aux=(3, 4))
    for op in (split, bn):
        monkeypatch.setitem(registry._REGISTRY, op.name, op)
    return split, bn


def _fc_graph():
    with mx.name.NameManager():
        data = mx.sym.Variable("data")
        fc1 = mx.sym.FullyConnected(data, num_hidden=4, name="fc1")
        act = mx.sym.Activation(fc1, act_type="tanh", name="act")
        sc = act * 2 + 1
        fc2 = mx.sym.FullyConnected(sc, num_hidden=3, no_bias=True, name="fc2")
        return mx.sym.softmax(fc2, axis=-1, name="prob"), fc1, data


def _feed():
    rs = np.random.RandomState(0)
    return {
        "data": mx.nd.array(rs.uniform(-1, 1, (2, 5))),
        "fc1_weight": mx.nd.array(rs.uniform(-1, 1, (4, 5))),
        "fc1_bias": mx.nd.array(rs.uniform(-1, 1, (4,))),
        "fc2_weight": mx.nd.array(rs.uniform(-1, 1, (3, 4))),
    }


def _roundtrip(sym):
    js = sym.tojson()
    again = mx.sym.load_json(js)
    assert again.tojson() == js
    assert again.list_arguments() == sym.list_arguments()
    assert again.list_outputs() == sym.list_outputs()
    assert again.list_auxiliary_states() == sym.list_auxiliary_states()
    return again


def _doc(nodes, heads, **extra):
    d = {"nodes": nodes, "arg_nodes": [i for i, n in enumerate(nodes) if n.get("op") == "null"],
         "heads": heads}
    d.update(extra)
    return json.dumps(d)


# ---------------------------------------------------------------------------
# byte layout, against text in MXNet 1.x's own layout

VAR_ONLY = """{
  "nodes": [
    {
      "op": "null", 
      "name": "data", 
      "inputs": []
    }
  ], 
  "arg_nodes": [0], 
  "node_row_ptr": [0, 1], 
  "heads": [[0, 0, 0]], 
  "attrs": {"mxnet_version": ["int", 10901]}
}"""

FC_RELU = """{
  "nodes": [
    {
      "op": "null", 
      "name": "data", 
      "attrs": {
        "__lr_mult__": "2.0", 
        "__shape__": "(2, 3)"
      }, 
      "inputs": []
    }, 
    {
      "op": "null", 
      "name": "fc1_weight", 
      "attrs": {"num_hidden": "4"}, 
      "inputs": []
    }, 
    {
      "op": "null", 
      "name": "fc1_bias", 
      "attrs": {"num_hidden": "4"}, 
      "inputs": []
    }, 
    {
      "op": "FullyConnected", 
      "name": "fc1", 
      "attrs": {"num_hidden": "4"}, 
      "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0]]
    }, 
    {
      "op": "Activation", 
      "name": "relu1", 
      "attrs": {"act_type": "relu"}, 
      "inputs": [[3, 0, 0]]
    }
  ], 
  "arg_nodes": [0, 1, 2], 
  "node_row_ptr": [0, 1, 2, 3, 4, 5], 
  "heads": [[4, 0, 0]], 
  "attrs": {"mxnet_version": ["int", 10901]}
}"""


def test_layout_single_variable():
    assert mx.sym.Variable("data").tojson() == VAR_ONLY


def test_layout_small_graph():
    data = mx.sym.Variable("data", shape=(2, 3), lr_mult=2.0)
    fc1 = mx.sym.FullyConnected(data, num_hidden=4, name="fc1")
    net = mx.sym.Activation(fc1, act_type="relu", name="relu1")
    assert net.tojson() == FC_RELU
    # and a file in this layout reads back to the same bytes
    assert mx.sym.load_json(FC_RELU).tojson() == FC_RELU


def _add_n_text(n):
    """MXNet's text for add_n over n variables x0..x{n-1} (n >= 10)."""
    var = '    {\n      "op": "null", \n      "name": "x%d", \n      "inputs": []\n    }, \n'
    text = '{\n  "nodes": [\n' + "".join(var % i for i in range(n))
    text += '    {\n      "op": "add_n", \n      "name": "s", \n      "attrs": {"num_args": "%d"}, \n' % n
    if n > 10:
        text += '      "inputs": [\n' + ", \n".join("        [%d, 0, 0]" % i for i in range(n)) + "\n      ]\n"
    else:
        text += '      "inputs": [' + ", ".join("[%d, 0, 0]" % i for i in range(n)) + "]\n"
    text += "    }\n  ], \n"
    if n > 10:
        text += '  "arg_nodes": [\n' + ", \n".join("    %d" % i for i in range(n)) + "\n  ], \n"
    else:
        text += '  "arg_nodes": [' + ", ".join(str(i) for i in range(n)) + "], \n"
    # node_row_ptr has n + 2 >= 12 entries: always multi-line here
    text += '  "node_row_ptr": [\n' + ", \n".join("    %d" % i for i in range(n + 2)) + "\n  ], \n"
    text += '  "heads": [[%d, 0, 0]], \n' % n
    text += '  "attrs": {"mxnet_version": ["int", 10901]}\n}'
    return text


@pytest.mark.parametrize("n", [10, 11])
def test_layout_arrays_break_after_ten_elements(n):
    xs = [mx.sym.Variable("x%d" % i) for i in range(n)]
    s = mx.sym.add_n(*xs, name="s")
    assert s.tojson() == _add_n_text(n)
    assert mx.sym.load_json(_add_n_text(n)).tojson() == _add_n_text(n)


def test_layout_many_heads():
    xs = [mx.sym.Variable("v%d" % i) for i in range(11)]
    js = mx.sym.Group(xs).tojson()
    assert '  "heads": [\n    [0, 0, 0], \n    [1, 0, 0], \n' in js
    assert '    [10, 0, 0]\n  ], \n  "attrs"' in js
    assert mx.sym.load_json(js).tojson() == js


def test_layout_escaping_and_raw_characters():
    name = 'a"b\\c\nd\te\rf/g\u00e9\x01'
    js = mx.sym.Variable(name).tojson()
    # only \r \n \\ \t \" are escaped; "/", non-ASCII and other control characters stay raw
    assert '"name": "a\\"b\\\\c\\nd\\te\\rf/g\u00e9\x01", ' in js
    again = mx.sym.load_json(js)
    assert again.list_arguments() == [name]
    assert again.tojson() == js


def test_layout_control_deps_and_no_final_newline():
    a = _var("a")
    b = Node(registry.get("negative"), "neg", {}, [Entry(a)])
    c = Node(registry.get("negative"), "neg2", {}, [Entry(a)])
    c.control_deps.append(b)
    js = _sym([Entry(c)]).tojson()
    assert js.endswith("}") and not js.endswith("\n")
    assert ('      "name": "neg2", \n      "inputs": [[0, 0, 0]], \n      "control_deps": [1]\n    }'
            in js)
    again = mx.sym.load_json(js)
    assert again.tojson() == js


def test_layout_multi_output_and_aux_versions(fake_ops):
    split, bn = fake_ops
    x = _var("x")
    s = Node(split, "sp", {}, [Entry(x)])
    vars_ = [_var("bn_" + n) for n in ("gamma", "beta", "moving_mean", "moving_var")]
    b = Node(bn, "bn", {}, [Entry(s, 1)] + [Entry(v) for v in vars_])
    js = _sym([Entry(s, 0), Entry(b, 0)]).tojson()
    d = json.loads(js)
    # nnvm bumps the version of a variable an operator mutates
    assert d["nodes"][6]["inputs"] == [[1, 1, 0], [2, 0, 0], [3, 0, 0], [4, 0, 1], [5, 0, 1]]
    assert '"inputs": [[1, 1, 0], [2, 0, 0], [3, 0, 0], [4, 0, 1], [5, 0, 1]]\n' in js
    # node_row_ptr counts every output, hidden ones included
    assert d["node_row_ptr"] == [0, 1, 3, 4, 5, 6, 7, 10]
    assert d["arg_nodes"] == [0, 2, 3, 4, 5]
    assert d["heads"] == [[1, 0, 0], [6, 0, 0]]
    again = _roundtrip(_sym([Entry(s, 0), Entry(b, 0)]))
    assert again.list_auxiliary_states() == ["bn_moving_mean", "bn_moving_var"]
    # a head must be a visible output; an input may read a hidden one
    with pytest.raises(MXNetError, match=r"head 1 asks for output 2 of node 6 \('bn'\), which has 1 visible output"):
        mx.sym.load_json(js.replace('"heads": [[1, 0, 0], [6, 0, 0]]', '"heads": [[1, 0, 0], [6, 2, 0]]'))
    d["nodes"].append({"op": "negative", "name": "neg", "inputs": [[6, 2, 0]]})
    d["heads"] = [[7, 0, 0]]
    assert mx.sym.load_json(json.dumps(d)).list_outputs() == ["neg_output"]


def test_operators_written_under_canonical_name():
    x = mx.sym.Variable("x")
    s = mx.sym.Group([x + x, x * 2, mx.sym.ElementWiseSum(x, x, name="ews")])
    ops = [n["op"] for n in json.loads(s.tojson())["nodes"]]
    assert ops == ["null", "elemwise_add", "_mul_scalar", "add_n"]
    # aliases in a file are read and written back canonically
    js = _doc([{"op": "null", "name": "x", "inputs": []},
               {"op": "_Plus", "name": "p", "inputs": [[0, 0, 0], [0, 0, 0]]},
               {"op": "_PlusScalar", "name": "q", "attrs": {"scalar": "1.5"}, "inputs": [[1, 0, 0]]}],
              [[2, 0, 0]])
    ops = [n["op"] for n in json.loads(mx.sym.load_json(js).tojson())["nodes"]]
    assert ops == ["null", "elemwise_add", "_plus_scalar"]


# ---------------------------------------------------------------------------
# round trips


def test_roundtrip_matches_mxnet_structure_and_evaluates_the_same():
    net, _, _ = _fc_graph()
    d = json.loads(net.tojson())
    assert [(n["op"], n["name"]) for n in d["nodes"]] == [
        ("null", "data"), ("null", "fc1_weight"), ("null", "fc1_bias"), ("FullyConnected", "fc1"),
        ("Activation", "act"), ("_mul_scalar", "_mulscalar0"), ("_plus_scalar", "_plusscalar0"),
        ("null", "fc2_weight"), ("FullyConnected", "fc2"), ("softmax", "prob")]
    assert d["arg_nodes"] == [0, 1, 2, 7]
    assert d["heads"] == [[9, 0, 0]]
    assert d["nodes"][8]["attrs"] == {"no_bias": "True", "num_hidden": "3"}
    assert d["nodes"][5]["attrs"] == {"scalar": "2"}
    again = _roundtrip(net)
    a = net.eval(ctx=mx.cpu(), **_feed())[0].asnumpy()
    b = again.eval(ctx=mx.cpu(), **_feed())[0].asnumpy()
    np.testing.assert_array_equal(a, b)


def test_roundtrip_group_with_shared_nodes():
    net, fc1, data = _fc_graph()
    grp = mx.sym.Group([fc1, net, fc1, data])
    d = json.loads(grp.tojson())
    assert d["heads"] == [[3, 0, 0], [9, 0, 0], [3, 0, 0], [0, 0, 0]]
    again = _roundtrip(grp)
    assert again.list_outputs() == ["fc1_output", "prob_output", "fc1_output", "data"]
    for x, y in zip(grp.eval(ctx=mx.cpu(), **_feed()), again.eval(ctx=mx.cpu(), **_feed())):
        np.testing.assert_array_equal(x.asnumpy(), y.asnumpy())


def test_roundtrip_variable_attributes():
    init = '["uniform", {"scale": 0.01}]'
    w = mx.sym.Variable("w", shape=(3, 4), lr_mult=0.5, wd_mult=0.0, dtype="float16", init=init,
                        __layout__="NC")
    js = w.tojson()
    assert ('      "attrs": {\n'
            '        "__dtype__": "2", \n'
            '        "__init__": "[\\"uniform\\", {\\"scale\\": 0.01}]", \n'
            '        "__layout__": "NC", \n'
            '        "__lr_mult__": "0.5", \n'
            '        "__shape__": "(3, 4)", \n'
            '        "__wd_mult__": "0.0"\n'
            '      }, \n') in js
    again = _roundtrip(w)
    assert again.attr("__init__") == init
    assert again.attr("__shape__") == "(3, 4)"
    assert again.infer_shape()[0] == [(3, 4)]


def test_roundtrip_attr_scope_attributes():
    with mx.AttrScope(__group__="g1", __mood__="calm"):
        data = mx.sym.Variable("data")
        fc = mx.sym.FullyConnected(data, num_hidden=2, name="fc")
    js = fc.tojson()
    d = json.loads(js)
    fc_node = d["nodes"][3]
    assert fc_node["attrs"] == {"__group__": "g1", "__mood__": "calm", "num_hidden": "2"}
    assert d["nodes"][0]["attrs"] == {"__group__": "g1", "__mood__": "calm"}
    again = _roundtrip(fc)
    assert again.attr_dict()["fc"]["__mood__"] == "calm"


def test_file_in_older_1x_layout_reads_back_unchanged_but_version():
    # the layout MXNet 1.x uses, written by 1.5: reading keeps every byte but the version
    assert mx.sym.load_json(FC_RELU.replace("10901", "10500")).tojson() == FC_RELU


# ---------------------------------------------------------------------------
# legacy files

LEGACY_080 = json.dumps({
    "nodes": [
        {"op": "null", "param": {}, "name": "data", "inputs": [], "backward_source_id": -1},
        {"op": "null", "param": {}, "name": "fc1_weight", "inputs": [], "backward_source_id": -1,
         "attr": {"lr_mult": "0.5", "ctx_group": "dev1"}},
        {"op": "null", "param": {}, "name": "fc1_bias", "inputs": [], "backward_source_id": -1},
        {"op": "FullyConnected", "param": {"no_bias": "False", "num_hidden": "4"}, "name": "fc1",
         "inputs": [[0, 0], [1, 0], [2, 0]], "backward_source_id": -1,
         "attr": {"bias_wd_mult": "0", "weight_lr_mult": "2", "ctx_group": "dev2", "mirror_stage": "1"}},
        {"op": "Activation", "param": {"act_type": "relu"}, "name": "relu1", "inputs": [[3, 0]],
         "backward_source_id": -1},
    ],
    "arg_nodes": [0, 1, 2],
    "heads": [[4, 0]],
})


def test_legacy_080_attributes_are_upgraded():
    s = mx.sym.load_json(LEGACY_080)
    assert s.list_arguments() == ["data", "fc1_weight", "fc1_bias"]
    attrs = s.attr_dict()
    # the operator's <arg>_lr_mult moves onto the input; plain hidden keys become __key__
    assert attrs["fc1_weight"] == {"__lr_mult__": "2", "__ctx_group__": "dev1"}
    assert attrs["fc1_bias"] == {"__wd_mult__": "0"}
    assert attrs["fc1"] == {"no_bias": "False", "num_hidden": "4", "__ctx_group__": "dev2",
                            "__mirror_stage__": "1"}
    js = s.tojson()
    assert '"inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0]]' in js
    assert js.endswith('"attrs": {"mxnet_version": ["int", 10901]}\n}')
    assert "backward_source_id" not in js and '"param"' not in js
    _roundtrip(s)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    w = np.ones((4, 3), np.float32)
    out = s.eval(ctx=mx.cpu(), data=mx.nd.array(x), fc1_weight=mx.nd.array(w),
                 fc1_bias=mx.nd.array(-np.full(4, 5, np.float32)))[0].asnumpy()
    np.testing.assert_array_equal(out, np.maximum(x @ w.T - 5, 0))


def test_versioned_file_merges_dicts_and_upgrades_hidden_keys_before_191():
    def load(version):
        js = _doc([{"op": "null", "name": "w", "attrs": {"lr_mult": "3"}, "inputs": []},
                   {"op": "_mul_scalar", "name": "m", "param": {"scalar": "2"}, "attr": {"__a__": "1"},
                    "attrs": {"__b__": "2"}, "inputs": [[0, 0]]}],
                  [[1, 0]], attrs={"mxnet_version": ["int", version]})
        return mx.sym.load_json(js).attr_dict()
    # MXNet 1.9.1 upgrades every older file's plain hidden keys (legacy_json_util.cc's FixParsing)
    assert load(10200) == {"w": {"__lr_mult__": "3"}, "m": {"scalar": "2", "__a__": "1", "__b__": "2"}}
    assert load(10901)["w"] == {"lr_mult": "3"}  # its own files are taken as written


def test_legacy_missing_aux_inputs_are_created(fake_ops):
    nodes = [{"op": "null", "name": "x", "inputs": []},
             {"op": "null", "name": "g", "inputs": []},
             {"op": "null", "name": "b", "inputs": []},
             {"op": "_t_bn", "name": "bn0", "inputs": [[0, 0], [1, 0], [2, 0]],
              "attr": {"moving_mean_lr_mult": "0"}}]
    s = mx.sym.load_json(_doc(nodes, [[3, 0]]))
    assert s.list_arguments() == ["x", "g", "b"]
    assert s.list_auxiliary_states() == ["bn0_moving_mean", "bn0_moving_var"]
    assert s.attr_dict()["bn0_moving_mean"] == {"__lr_mult__": "0"}
    d = json.loads(s.tojson())
    assert d["nodes"][5]["inputs"] == [[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 1], [4, 0, 1]]
    # from 0.9.0 on the file must name every input
    with pytest.raises(MXNetError, match=r"node 3 \('bn0'\).*missing \['moving_mean', 'moving_var'\]"):
        mx.sym.load_json(_doc(nodes[:3] + [dict(nodes[3], attr={})], [[3, 0]],
                              attrs={"mxnet_version": ["int", 900]}))


def test_legacy_key_naming_no_input_is_an_error():
    nodes = [{"op": "null", "name": "x", "inputs": []},
             {"op": "_mul_scalar", "name": "m", "param": {"scalar": "2"}, "attr": {"gamma_lr_mult": "2"},
              "inputs": [[0, 0]]}]
    with pytest.raises(MXNetError, match=r"node 1 \('m'\).*'gamma_lr_mult' names no input"):
        mx.sym.load_json(_doc(nodes, [[1, 0]]))


def test_legacy_080_batchnorm_statistics_are_created_with_attributes_and_initialisers():
    nodes = [{"op": "null", "name": n, "inputs": []} for n in ("x", "bn0_gamma", "bn0_beta")]
    nodes.append({"op": "BatchNorm", "name": "bn0", "param": {"eps": "0.001", "fix_gamma": "False"},
                  "inputs": [[0, 0], [1, 0], [2, 0]]})
    s = mx.sym.load_json(_doc(nodes, [[3, 0]]))
    attrs = s.attr_dict()
    # as MXNet 1.9.1: a copy of the operator's attributes, then the initialiser 0.9.4 added
    assert attrs["bn0_moving_mean"] == {"eps": "0.001", "fix_gamma": "False", "__init__": '["zero", {}]'}
    assert attrs["bn0_moving_var"] == {"eps": "0.001", "fix_gamma": "False", "__init__": '["one", {}]'}
    # a 0.9.3 file names the statistics; they get their initialisers too, unless they have one
    nodes = [{"op": "null", "name": n, "inputs": []} for n in ("x", "g", "b", "mm")]
    nodes.append({"op": "null", "name": "mv", "attrs": {"__init__": '["constant", {"value": 2}]'}, "inputs": []})
    nodes.append({"op": "BatchNorm", "name": "bn0", "attrs": {"eps": "0.001"},
                  "inputs": [[0, 0], [1, 0], [2, 0], [3, 0], [4, 0]]})
    for version, mm in ((903, {"__init__": '["zero", {}]'}), (904, {})):
        attrs = mx.sym.load_json(_doc(nodes, [[5, 0]], attrs={"mxnet_version": ["int", version]})).attr_dict()
        assert attrs.get("mm", {}) == mm
        assert attrs["mv"] == {"__init__": '["constant", {"value": 2}]'}


def test_legacy_argmax_axis_minus_one_meant_flatten():
    nodes = [X, {"op": "argmax", "name": "a", "param": {"axis": "-1"}, "inputs": [[0, 0]]}]
    x = np.array([[1, 9, 3], [7, 2, 8]], np.float32)
    for version, want in ((904, [1.0]), (905, [1.0, 2.0])):  # before 0.9.5: over the flattened array
        s = mx.sym.load_json(_doc(nodes, [[1, 0]], attrs={"mxnet_version": ["int", version]}))
        np.testing.assert_array_equal(s.eval(ctx=mx.cpu(), x=mx.nd.array(x))[0].asnumpy(), want)


def test_legacy_key_for_an_operator_input_is_an_error():
    nodes = [X, {"op": "Activation", "name": "r", "param": {"act_type": "relu"}, "inputs": [[0, 0]]},
             {"op": "Activation", "name": "r2", "param": {"act_type": "relu"}, "attr": {"data_lr_mult": "2"},
              "inputs": [[1, 0]]}]
    with pytest.raises(MXNetError, match=r"node 2 \('r2'\).*'data_lr_mult' is for input data, which is operator"):
        mx.sym.load_json(_doc(nodes, [[2, 0]]))


def _legacy_spelling(js, version, aux_names, target_shape):
    """A kiln-written document respelled as an older MXNet wrote it: operator attributes under
    ``param`` and hidden ones under ``attr`` (0.9-0.11), two-element entries, no
    ``node_row_ptr``, ``backward_source_id``, CamelCase operator aliases, ``Reshape`` with
    ``target_shape`` (0: the one size inferred; None keeps ``shape``), and ``mxnet_version``
    ``version`` (None: none, as 0.8.0, which did not save the auxiliary states ``aux_names``
    either)."""
    aliases = {"elemwise_add": "_Plus", "_plus_scalar": "_PlusScalar", "_mul_scalar": "_MulScalar"}
    doc = json.loads(js)
    if version is None:
        keep = [i for i, n in enumerate(doc["nodes"]) if n["name"] not in aux_names]
        new_id = {old: new for new, old in enumerate(keep)}
        doc["nodes"] = [doc["nodes"][i] for i in keep]
        for node in doc["nodes"]:
            node["inputs"] = [[new_id[e[0]]] + e[1:] for e in node["inputs"] if e[0] in new_id]
        doc["heads"] = [[new_id[e[0]]] + e[1:] for e in doc["heads"]]
        doc["arg_nodes"] = [new_id[i] for i in doc["arg_nodes"] if i in new_id]
    for node in doc["nodes"]:
        attrs = node.pop("attrs", {})
        hidden = {k: v for k, v in attrs.items() if k.startswith("__")}
        params = {k: v for k, v in attrs.items() if not k.startswith("__")}
        if node["op"] == "Reshape" and target_shape:
            del params["shape"]
            params["target_shape"] = target_shape
        node["op"] = aliases.get(node["op"], node["op"])
        node["param"] = params
        if hidden:
            node["attr"] = hidden
        node["inputs"] = [e[:2] for e in node["inputs"]]
        node["backward_source_id"] = -1
    doc["heads"] = [e[:2] for e in doc["heads"]]
    del doc["node_row_ptr"]
    if version is None:
        del doc["attrs"]
    else:
        doc["attrs"] = {"mxnet_version": ["int", version]}
    return json.dumps(doc, indent=2)


@pytest.mark.parametrize("version", [None, 903, 1100, 10300])
def test_legacy_spellings_give_the_same_outputs(version):
    with mx.name.NameManager():
        data = mx.sym.Variable("data", lr_mult=2.0)
        conv = mx.sym.Convolution(data, kernel=(3, 3), num_filter=4, pad=(1, 1), name="conv")
        bn = mx.sym.BatchNorm(conv, fix_gamma=False, name="bn")
        act = mx.sym.Activation(bn, act_type="relu", name="relu")
        res = mx.sym.elemwise_add(act, conv, name="res") * 0.5 + 1
        pool = mx.sym.Pooling(res, kernel=(2, 2), stride=(2, 2), pool_type="max", name="pool")
        flat = mx.sym.Reshape(pool, shape=(0, -1), name="flat")
        net = mx.sym.FullyConnected(flat, num_hidden=5, name="fc")
    modern = net.tojson()
    legacy = _legacy_spelling(modern, version, net.list_auxiliary_states(), "(0, 36)")  # 4 x 3 x 3
    assert '"param"' in legacy and "target_shape" in legacy and "_Plus" in legacy and "node_row_ptr" not in legacy
    old = mx.sym.load_json(legacy)
    assert old.list_arguments() == net.list_arguments()
    assert old.list_auxiliary_states() == net.list_auxiliary_states()
    assert old.attr_dict()["data"]["__lr_mult__"] == "2.0"
    assert old.attr_dict()["bn_moving_var"]["__init__"] == '["one", {}]'
    rs = np.random.RandomState(0)
    arg_shapes, _, aux_shapes = net.infer_shape(data=(2, 3, 6, 6))
    args = {n: mx.nd.array(rs.uniform(0.5, 1.5, s)) for n, s in zip(net.list_arguments(), arg_shapes)}
    aux = {n: mx.nd.array(rs.uniform(0.5, 1.5, s)) for n, s in zip(net.list_auxiliary_states(), aux_shapes)}
    want, got = (s.bind(mx.cpu(), args=args, aux_states=aux).forward()[0].asnumpy() for s in (net, old))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # written back as MXNet 1.9.1 writes it: the same as the modern file, but the operators' spelling
    again = json.loads(old.tojson())
    assert [n["name"] for n in again["nodes"]] == [n["name"] for n in json.loads(modern)["nodes"]]
    assert "backward_source_id" not in old.tojson() and again["attrs"]["mxnet_version"] == ["int", 10901]


def test_legacy_checkpoint_params_load_into_matching_variables(tmp_path):
    """An MXNet Module checkpoint: 0.8-era symbol file (statistics created on load) and a
    .params file whose keys say arg: or aux:; both load paths put each array in its variable."""
    with mx.name.NameManager():
        bn = mx.sym.BatchNorm(mx.sym.Convolution(mx.sym.Variable("data"), kernel=(3, 3), num_filter=4,
                                                 name="conv"), fix_gamma=False, name="bn")
        net = mx.sym.FullyConnected(mx.sym.Flatten(bn), num_hidden=5, name="fc")
    sym_file = tmp_path / "old-symbol.json"
    sym_file.write_text(_legacy_spelling(net.tojson(), None, net.list_auxiliary_states(), None))
    rs = np.random.RandomState(1)
    arg_shapes, _, aux_shapes = net.infer_shape(data=(2, 3, 5, 5))
    args = {n: mx.nd.array(rs.uniform(0.5, 1.5, s)) for n, s in zip(net.list_arguments(), arg_shapes)}
    aux = {n: mx.nd.array(rs.uniform(0.5, 1.5, s)) for n, s in zip(net.list_auxiliary_states(), aux_shapes)}
    data = args.pop("data")
    params_file = str(tmp_path / "old-0000.params")
    mx.nd.save(params_file, dict([("arg:" + k, v) for k, v in args.items()]
                                 + [("aux:" + k, v) for k, v in aux.items()]))
    want = net.bind(mx.cpu(), args=dict(args, data=data), aux_states=aux).forward()[0].asnumpy()

    old = mx.sym.load(str(sym_file))
    saved = mx.nd.load(params_file)
    arg_params = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux_params = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    assert sorted(aux_params) == sorted(old.list_auxiliary_states())
    got = old.bind(mx.cpu(), args=dict(arg_params, data=data), aux_states=aux_params).forward()[0].asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    block = mx.gluon.SymbolBlock.imports(str(sym_file), ["data"], params_file)
    np.testing.assert_allclose(block(data).asnumpy(), want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# errors

X = {"op": "null", "name": "x", "inputs": []}


def _bad(text, pattern):
    with pytest.raises(MXNetError, match=pattern) as info:
        mx.sym.load_json(text)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("text, pattern", [
    ("{not json", "malformed"),
    ("", "malformed"),
    ("[1, 2]", "must be an object"),
    ('{"heads": []}', "no 'nodes'"),
    ('{"nodes": []}', "no 'heads'"),
    ('{"nodes": {}, "heads": []}', "'nodes' must be a list"),
    ('{"nodes": [], "heads": []}', "'heads' is empty"),
    ('{"nodes": [5], "heads": [[0, 0]]}', "node 0 must be an object"),
    ('{"nodes": [{"name": "x", "inputs": []}], "heads": [[0, 0]]}', r"node 0 \('x'\) has no 'op'"),
    ('{"nodes": [{"op": "null", "inputs": []}], "heads": [[0, 0]]}', "node 0 has no 'name'"),
    ('{"nodes": [{"op": 3, "name": "x"}], "heads": [[0, 0]]}', r"'op' must be a string"),
])
def test_malformed_documents(text, pattern):
    _bad(text, pattern)


def test_input_must_be_text():
    _bad(5, "must be a string")
    _bad(b"\xff\xfe", "not UTF-8")
    assert mx.sym.load_json(_doc([X], [[0, 0, 0]]).encode()).list_arguments() == ["x"]


@pytest.mark.parametrize("entry, pattern", [
    ([0], r"must be \[node_id"),
    ([0, 0, 0, 0], r"must be \[node_id"),
    ([0, "0", 0], r"must be \[node_id"),
    ([True, 0, 0], r"must be \[node_id"),
    ([0.0, 0, 0], r"must be \[node_id"),
    ("x", r"must be \[node_id"),
    ([0, 0, -1], "negative version"),
    ([1, 0, 0], r"refers to node 1, which is not an earlier node \(ids 0..0 precede it\)"),
    ([7, 0, 0], "refers to node 7"),
    ([-1, 0, 0], "refers to node -1"),
    ([0, 1, 0], r"asks for output 1 of node 0 \('x'\), which has 1 output"),
])
def test_bad_input_entries(entry, pattern):
    js = _doc([X, {"op": "negative", "name": "neg", "inputs": [entry]}], [[1, 0, 0]])
    _bad(js, r"node 1 \('neg'\): input 0 .*" + pattern)


def test_bad_heads():
    _bad(_doc([X], [[5, 0, 0]]), r"heads: head 0 refers to node 5, which does not exist \(the file has 1 node\)")
    _bad(_doc([X], [[0, 0, 0], [0, 2, 0]]), "head 1 asks for output 2")
    _bad(_doc([X], [[0]]), r"head 0 must be \[node_id")
    _bad(json.dumps({"nodes": [X], "heads": "x"}), "'heads' must be a list")


def test_unknown_operators_are_all_reported_with_counts():
    nodes = [X, {"op": "NoSuchConv", "name": "c1", "inputs": [[0, 0]]},
             {"op": "NoSuchPool", "name": "p1", "inputs": [[1, 0]]},
             {"op": "NoSuchConv", "name": "c2", "inputs": [[2, 0]]},
             {"op": "FullyConnected", "name": "fc", "attrs": {"num_hidden": "2"}, "inputs": [[3, 0]]}]
    with pytest.raises(MXNetError) as info:
        mx.sym.load_json(_doc(nodes, [[4, 0]]))
    msg = str(info.value)
    assert "2 operators kiln does not support (3 nodes)" in msg
    assert "NoSuchConv x2 (first node 'c1')" in msg and "NoSuchPool x1 (first node 'p1')" in msg


@pytest.mark.parametrize("node, pattern", [
    ({"attrs": {"num_hidden": "4", "bogus": "1"}}, r"operator FullyConnected \(node 'fc'\): unknown attribute 'bogus'"),
    ({"attrs": {"num_hidden": "four"}}, r"node 'fc'.*num_hidden='four' is invalid"),
    ({"attrs": {}}, r"node 'fc'.*required attribute 'num_hidden' is missing"),
    ({"attrs": {"num_hidden": 4}}, r"node 1 \('fc'\): attribute 'num_hidden' must be a string"),
    ({"attrs": ["num_hidden"]}, r"node 1 \('fc'\): 'attrs' must be an object"),
    ({"param": "num_hidden=4"}, r"node 1 \('fc'\): 'param' must be an object"),
    ({"attrs": {"num_hidden": "4", "no_bias": "True"}},
     r"node 1 \('fc'\): operator FullyConnected takes 2 inputs \['data', 'weight'\], but the file gives 3"),
    ({"attrs": {"num_hidden": "4"}, "inputs": [[0, 0, 0]]},
     r"node 1 \('fc'\): operator FullyConnected takes 3 inputs.*missing \['weight', 'bias'\]"),
    ({"attrs": {"num_hidden": "4"}, "inputs": {"data": 0}}, r"node 1 \('fc'\): 'inputs' must be a list"),
    ({"attrs": {"num_hidden": "4"}, "control_deps": [3]}, r"node 1 \('fc'\): control_deps must be ids of earlier"),
    ({"attrs": {"num_hidden": "4"}, "subgraphs": [{"nodes": []}]}, r"node 1 \('fc'\).*subgraphs"),
])
def test_bad_operator_nodes(node, pattern):
    fc = {"op": "FullyConnected", "name": "fc", "inputs": [[0, 0, 0], [0, 0, 0], [0, 0, 0]]}
    fc.update(node)
    _bad(_doc([X, fc], [[1, 0, 0]], attrs={"mxnet_version": ["int", 10901]}), pattern)


def test_bad_variables_and_graph_fields():
    _bad(_doc([X, {"op": "null", "name": "y", "inputs": [[0, 0, 0]]}], [[1, 0]]),
         r"node 1 \('y'\): a variable .* cannot have inputs")
    neg = {"op": "negative", "name": "neg", "inputs": [[0, 0, 0]]}
    base = {"nodes": [X, neg], "heads": [[1, 0, 0]]}
    _bad(json.dumps(dict(base, arg_nodes=[1])), r"arg_nodes lists node 1 \('neg'\), which is an operator")
    _bad(json.dumps(dict(base, arg_nodes=[2])), "arg_nodes refers to node 2")
    _bad(json.dumps(dict(base, arg_nodes="0")), "'arg_nodes' must be a list")
    _bad(json.dumps(dict(base, node_row_ptr=[0, "1"])), "'node_row_ptr' must be a list of integers")
    _bad(json.dumps(dict(base, attrs=[])), "graph 'attrs' must be an object")
    _bad(json.dumps(dict(base, attrs={"mxnet_version": 10901})), "mxnet_version must be")
    _bad(json.dumps(dict(base, attrs={"mxnet_version": ["str", "1.9.1"]})), "mxnet_version must be")
    # optional fields may be absent; unknown graph attributes are ignored
    s = mx.sym.load_json(json.dumps(dict(base, attrs={"mxnet_version": ["int", 10901],
                                                       "is_np_shape": ["int", 0]})))
    assert s.list_outputs() == ["neg_output"]


def test_attribute_values_are_never_evaluated():
    payload = "__import__('os').system('false')"
    js = _doc([{"op": "null", "name": "x", "attrs": {"__init__": payload, "__shape__": "(2,)"}, "inputs": []}],
              [[0, 0, 0]])
    s = mx.sym.load_json(js)
    assert s.attr("__init__") == payload
    assert mx.sym.load_json(s.tojson()).attr("__init__") == payload
