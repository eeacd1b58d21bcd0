"""Programs with a run-time batch size (``compiler/dynamic_batch.py``): one program, run at
several batch sizes in turn (the arena is laid out again each time the batch changes), must
give the Executor's results for each; and graphs that cannot take a run-time batch are
refused with a message naming the cause."""
import numpy as np
import pytest

import kiln as mx
from kiln.compiler.dynamic_batch import compile_dynamic_batch
from kiln.compiler.symbolic_sizes import SizeTable
from kiln.runtime import MXNetError
from kiln.runtime.program import LoadedProgram

S = mx.sym
BATCHES = (3, 1, 8, 3)


def _cnn():
    x = S.Variable("data")
    c1 = S.Convolution(x, kernel=(3, 3), num_filter=8, pad=(1, 1), name="c1")
    r1 = S.Activation(S.BatchNorm(c1, fix_gamma=False, name="bn1"), act_type="relu")
    p1 = S.Pooling(r1, kernel=(2, 2), stride=(2, 2), pool_type="max")
    c2 = S.Convolution(p1, kernel=(3, 3), num_filter=8, num_group=2, name="c2")
    c3 = S.Convolution(p1, kernel=(1, 1), num_filter=8, name="c3")
    gap = [S.Pooling(c, kernel=(1, 1), global_pool=True, pool_type="avg") for c in (c2, c3)]
    fc = S.FullyConnected(S.Dropout(S.Flatten(S.Concat(*gap, dim=1)), p=0.5), num_hidden=10, name="fc")
    return S.Group([S.softmax(fc), S.sum(fc, axis=0), S.Reshape(c3, shape=(-1, 8))]), {"data": (None, 3, 12, 12)}


def _mlp():
    x = S.Variable("data")
    h = S.Activation(S.FullyConnected(x, num_hidden=70, name="fc1"), act_type="tanh")
    return S.log_softmax(S.FullyConnected(h, num_hidden=300, name="fc2") + 1.0), {"data": (None, 40)}


def _lstm():
    x = S.Variable("data")  # TNC: the batch is axis 1
    out = S.RNN(x, S.Variable("rnn_params"), S.Variable("h0"), S.Variable("c0"), state_size=6, num_layers=2,
                mode="lstm", bidirectional=True, state_outputs=True, name="rnn")
    return out, {"data": (5, None, 4), "h0": (4, None, 6), "c0": (4, None, 6)}


def _mixed():
    """Batch-dependent sizes other than N: a row appended (N + 1), the batch folded into rows
    (4N), the batch moved off axis 0, a sliced non-batch axis, tiling, and a batched product."""
    x, extra = S.Variable("data"), S.Variable("extra")
    cat = S.Concat(x, extra, dim=0)  # (N + 1, 4, 6)
    rows = S.Reshape(x, shape=(-3, -2))  # (4N, 6)
    moved = S.transpose(S.slice(x, begin=(None, 1), end=(None, 3)), axes=(1, 0, 2))  # (2, N, 6)
    bd = S.batch_dot(x, S.swapaxes(x, dim1=1, dim2=2))  # (N, 4, 4)
    emb = S.Embedding(S.Variable("tokens"), input_dim=7, output_dim=3, name="emb")  # (N, 5, 3)
    norm = S.LayerNorm(S.tile(x, reps=(1, 1, 2)), name="ln")
    return (S.Group([S.sum(cat, axis=1), S.softmax(rows, axis=0), moved, bd, emb, norm]),
            {"data": (None, 4, 6), "extra": (1, 4, 6), "tokens": (None, 5)})


CASES = {"cnn": _cnn, "mlp": _mlp, "lstm": _lstm, "mixed": _mixed}


def _at(shape, n):
    return tuple(n if d is None else d for d in shape)


def _setup(sym, inputs):
    """Variable shapes (None at batch axes) and weights, from inference at batch 2."""
    names = sym.list_arguments() + sym.list_auxiliary_states()
    arg_shapes, _, aux_shapes = sym.infer_shape(**{k: _at(v, 2) for k, v in inputs.items()})
    rng = np.random.default_rng(0)
    weights = {}
    for name, shape in zip(names, arg_shapes + aux_shapes):
        if name not in inputs:
            w = rng.standard_normal(shape) * 0.3
            weights[name] = (np.abs(w) + 0.5 if name.endswith("_var") else w).astype(np.float32)
    return dict(inputs, **{k: v.shape for k, v in weights.items()}), weights


def _feeds(inputs, weights, n, rng):
    feeds = dict(weights)
    for name, shape in inputs.items():
        size = _at(shape, n)
        feeds[name] = (rng.integers(0, 7, size) if name == "tokens" else rng.standard_normal(size)).astype(np.float32)
    return feeds


def _executor(sym, feeds):
    aux = sym.list_auxiliary_states()
    ex = sym.simple_bind(mx.cpu(), grad_req="null", **{k: v.shape for k, v in feeds.items() if k not in aux})
    for k, v in feeds.items():
        (ex.aux_dict if k in aux else ex.arg_dict)[k][:] = v
    return [o.asnumpy() for o in ex.forward(is_train=False)]


def _run(prog, spec, info, table, feeds, n):
    for k, v in feeds.items():
        if prog.has_slot(k):
            prog.bind(k, v)
    outs = []
    for slot, shape, dtype in zip(info["outputs"], info["out_shapes"], info["out_dtypes"]):
        dims = table.values(n)
        outs.append(np.empty(tuple(dims[int(d[1:])] if isinstance(d, str) else d for d in shape), dtype))
        prog.bind(slot, outs[-1])
    prog.bind(spec.dims_slot, table.values(n))
    prog.run("forward")
    return outs


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("disabled", ["", "fuse,memory"])
def test_one_program_every_batch_size(case, disabled, monkeypatch):
    """Compiled once, run at batch 3, 1, 8, 3: each equals the Executor's fixed-batch program,
    with the optimising passes on and off."""
    monkeypatch.setenv("KILN_DISABLE_PASSES", disabled)
    sym, inputs = CASES[case]()
    shapes, weights = _setup(sym, inputs)
    spec, info, table = compile_dynamic_batch(sym._outputs, shapes, {k: "float32" for k in shapes})
    prog = LoadedProgram(spec)
    rng = np.random.default_rng(1)
    for n in BATCHES:
        feeds = _feeds(inputs, weights, n, rng)
        got = _run(prog, spec, info, table, feeds, n)
        want = _executor(sym, feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_sizes_and_arena_follow_the_batch():
    sym, inputs = _mixed()
    shapes, _ = _setup(sym, inputs)
    spec, info, table = compile_dynamic_batch(sym._outputs, shapes, {k: "float32" for k in shapes})
    assert table.rows[0] == (1, 0) and (1, 1) in table.rows and (4, 0) in table.rows
    assert table.values(5).tolist()[:1] == [5]
    assert spec.arena_scale > 0 and spec.dims_slot == "__dims__"
    assert info["out_shapes"][0] == ("$%d" % table.rows.index((1, 1)), 6)
    # every internal slot of a batch-dependent size sits in the scaled arena, the others in the fixed one
    for s in spec.slots:
        if not s.external and s.alias_of is None:
            assert (s.offset_scale > 0 or s.offset == spec.arena_bytes) if s.symbolic else s.offset_scale == 0
    report = spec.report
    assert report["flops"]["total"] > 0 and report["memory"]["arena_scale"] == spec.arena_scale


def test_size_table():
    t = SizeTable([(1, 0)])
    d = t.dim(4, 1)
    assert d.index == 1 and t.dim(4, 1).index == 1 and t.values(3).tolist() == [3, 13]
    assert t.byte_poly(("$0", 3), "float32") == (0, 12) and t.byte_poly(("$1", 2), "float64") == (16, 64)
    assert t.placement(("$1",), "float32") == (True, 20) and t.placement((3,), "float32") == (False, 12)
    assert t.describe(("$0", "$1", 7)) == "(N, 4*N+1, 7)"
    with pytest.raises(NotImplementedError, match="several batch-dependent axes"):
        t.byte_poly(("$0", "$0"), "float32")


def _compile(sym, inputs):
    shapes, _ = _setup(sym, {k: v for k, v in inputs.items()})
    return compile_dynamic_batch(sym._outputs, shapes, {k: "float32" for k in shapes})


def test_refusals_name_the_cause():
    x = S.Variable("data")
    # inference fails with another batch size: the graph wrote the batch into an attribute
    with pytest.raises(MXNetError, match="does not accept a run-time batch size.*Reshape"):
        _compile(S.Reshape(x, shape=(2, 4)) * 2, {"data": (None, 4)})
    # an (N, N) product: a size that is not a single batch-dependent axis
    flat = S.Flatten(x)
    with pytest.raises((NotImplementedError, MXNetError), match="run time|batch"):
        _compile(S.dot(flat, flat, transpose_b=True), {"data": (None, 4)})
    # an operator whose lowering needs a number for the batch axis
    with pytest.raises(NotImplementedError, match="slice_axis.*run time"):
        _compile(S.slice_axis(x, axis=0, begin=1, end=None), {"data": (None, 4)})
    with pytest.raises(MXNetError, match="no input has a run-time batch axis"):
        compile_dynamic_batch(x._outputs, {"data": (2, 4)}, {"data": "float32"})
