"""Ordering operators (compiler/ops/sort.py): sort, argsort, topk, and their Sort-stage kernel."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from kiln.compiler.kernel import Sort
from kiln.compiler.ops import registry
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

from .test_fuse import kernels

FLOATS = ["float16", "float32", "float64"]
INTS = ["int8", "uint8", "int32", "int64"]
AXES = [-1, 0, -2, None]


def data(shape, dtype, seed=0, distinct=None):
    """Values with many ties (few distinct values), or all distinct when ``distinct``."""
    rng = np.random.RandomState(seed)
    size = int(np.prod(shape))
    if distinct:
        x = rng.permutation(size).astype("float64") - size // 3
        if dtype in FLOATS:
            x = x * 0.25
        x = x[:size].reshape(shape)
    elif dtype in FLOATS:
        x = rng.randint(-4, 5, size=shape) * 0.5
    elif dtype == "uint8":
        x = rng.randint(0, 256, size=shape)
    elif dtype == "int8":
        x = rng.randint(-128, 128, size=shape)
    else:
        x = rng.randint(-5, 6, size=shape) * (1 << 20 if dtype == "int64" else 1)
    return np.asarray(x).astype(dtype)


def reference(opname, x, attrs):
    op = registry.get(opname)
    return op.reference(op.parse_attrs(op.format_attrs(attrs, "op"), "op"), x.copy())


def assert_same(got, want):
    """Exact equality, NaN included: sorting moves values, it never rounds them."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    np.testing.assert_array_equal(got, want)


# ---- forward against numpy, through a bound Symbol (check_forward) ----
@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("is_ascend", [True, False])
def test_sort_and_argsort(dtype, axis, is_ascend):
    x = data((6, 37), dtype)
    attrs = {"axis": axis, "is_ascend": is_ascend}
    check_forward("sort", [x], attrs, rtol=0, atol=0)
    check_forward("argsort", [x], attrs, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", FLOATS + ["int32"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1, None])
def test_sort_3d_strided_rows(dtype, axis):
    """Axes other than the last read and write rows with a stride."""
    x = data((3, 4, 19), dtype, seed=1)
    check_forward("sort", [x], {"axis": axis}, rtol=0, atol=0)
    check_forward("argsort", [x], {"axis": axis, "is_ascend": False, "dtype": "int64"}, rtol=0, atol=0)


@pytest.mark.parametrize("index_dtype", ["uint8", "int32", "int64", "float16", "float32", "float64"])
def test_argsort_index_dtypes(index_dtype):
    x = data((3, 50), "float32", seed=2)
    outs = check_forward("argsort", [x], {"dtype": index_dtype}, rtol=0, atol=0)
    assert outs[0].asnumpy().dtype == np.dtype(index_dtype)


@pytest.mark.parametrize("ret_typ", ["value", "indices", "mask", "both"])
@pytest.mark.parametrize("k", [2, 0, 9])
@pytest.mark.parametrize("axis", [-1, 0, None])
@pytest.mark.parametrize("is_ascend", [False, True])
def test_topk(ret_typ, k, axis, is_ascend):
    x = data((9, 9), "float32", seed=3)
    attrs = {"ret_typ": ret_typ, "k": k, "axis": axis, "is_ascend": is_ascend}
    outs = check_forward("topk", [x], attrs, rtol=0, atol=0)
    n = 81 if axis is None else 9
    kk = n if k <= 0 else k
    if ret_typ == "mask":
        assert outs[0].shape == x.shape and outs[0].asnumpy().sum() == kk * (81 // n)
    else:
        assert outs[0].shape[0 if axis in (0, None) else 1] == kk
    assert len(outs) == (2 if ret_typ == "both" else 1)


@pytest.mark.parametrize("dtype", FLOATS + INTS)
@pytest.mark.parametrize("ret_typ", ["value", "indices", "mask", "both"])
def test_topk_dtypes(dtype, ret_typ):
    x = data((4, 21), dtype, seed=4)
    check_forward("topk", [x], {"ret_typ": ret_typ, "k": 5, "dtype": "int32"}, rtol=0, atol=0)


def test_topk_negative_k_means_all():
    x = data((4, 6), "float32", seed=11)
    for k in (-1, -5):
        check_forward("topk", [x], {"k": k, "ret_typ": "both"}, rtol=0, atol=0)
        assert mx.nd.topk(mx.nd.array(x), k=k).shape == (4, 6)


def test_topk_output_dtypes():
    x = mx.nd.array(data((3, 8), "float64"), dtype="float64")
    v, i = mx.nd.topk(x, k=2, ret_typ="both", dtype="int64")
    assert v.dtype == np.float64 and i.dtype == np.int64
    assert mx.nd.topk(x, k=2).dtype == np.float32  # indices default to float32, as MXNet
    assert mx.nd.topk(x, k=2, ret_typ="mask").dtype == np.float64  # the mask has the data's dtype


# ---- order of equal keys and NaN ----
def test_ties_are_stable_in_both_directions():
    x = np.array([[2, 1, 2, 1, 3, 1, 2]], dtype="float32")
    assert mx.nd.argsort(mx.nd.array(x)).asnumpy().tolist() == [[1, 3, 5, 0, 2, 6, 4]]
    assert mx.nd.argsort(mx.nd.array(x), is_ascend=False).asnumpy().tolist() == [[4, 0, 2, 6, 1, 3, 5]]
    assert mx.nd.topk(mx.nd.array(x), k=3).asnumpy().tolist() == [[4, 0, 2]]
    assert mx.nd.topk(mx.nd.array(x), k=2, is_ascend=True).asnumpy().tolist() == [[1, 3]]


@pytest.mark.parametrize("n", [5, 16, 17, 1000])
def test_all_equal_keys_keep_positions(n):
    x = np.zeros((2, n), "float32")
    for asc in (True, False):
        got = mx.nd.argsort(mx.nd.array(x), is_ascend=asc, dtype="int32").asnumpy()
        assert_same(got, np.tile(np.arange(n, dtype="int32"), (2, 1)))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("is_ascend", [True, False])
def test_nan_is_the_largest_key(dtype, is_ascend):
    """NaN last ascending, first descending; infinities and -0.0/0.0 (equal) in between."""
    row = np.array([1.0, np.nan, -np.inf, 0.0, np.inf, -0.0, np.nan, -2.0, 0.0, 1.0] * 3, dtype=dtype)
    x = np.stack([row, row[::-1]])
    attrs = {"is_ascend": is_ascend}
    check_forward("sort", [x], attrs, rtol=0, atol=0)
    check_forward("argsort", [x], dict(attrs, dtype="int32"), rtol=0, atol=0)
    got = mx.nd.sort(mx.nd.array(x, dtype=dtype), is_ascend=is_ascend).asnumpy()
    nans = np.isnan(got[0])
    assert (nans[-6:].all() and not nans[:-6].any()) if is_ascend else (nans[:6].all() and not nans[6:].any())
    check_forward("topk", [x], {"k": 4, "ret_typ": "both", "is_ascend": is_ascend, "dtype": "int32"},
                  rtol=0, atol=0)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("is_ascend", [True, False])
def test_nan_signed_zero_and_ties_in_long_rows(dtype, is_ascend):
    """Long rows take the radix path: the same order as the comparison sort of short rows."""
    rng = np.random.RandomState(10)
    pool = np.array([np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -1.5, 2.0, 65504.0, -65504.0, 1e-3])
    x = rng.choice(pool, size=(3, 1500)).astype(dtype)
    check_forward("sort", [x], {"is_ascend": is_ascend}, rtol=0, atol=0)
    check_forward("argsort", [x], {"is_ascend": is_ascend, "dtype": "int32"}, rtol=0, atol=0)
    check_forward("topk", [x], {"k": 700, "ret_typ": "both", "is_ascend": is_ascend}, rtol=0, atol=0)
    got = mx.nd.sort(mx.nd.array(x, dtype=dtype), is_ascend=is_ascend).asnumpy()
    want = reference("sort", x, {"is_ascend": is_ascend})
    assert (np.signbit(got) == np.signbit(want)).all()  # -0.0 stays where its position puts it


@pytest.mark.parametrize("dtype", INTS)
@pytest.mark.parametrize("n", [8, 40, 70, 300, 2000])
def test_int_rows_on_both_sides_of_the_radix_threshold(dtype, n):
    x = data((5, n), dtype, seed=n)
    extremes = np.array([np.iinfo(dtype).min, np.iinfo(dtype).max, 0], dtype=dtype)
    x[:, :3] = extremes
    check_forward("argsort", [x], {"dtype": "int32"}, rtol=0, atol=0)
    check_forward("sort", [x], {"is_ascend": False}, rtol=0, atol=0)


# ---- row lengths ----
@pytest.mark.parametrize("n", [1, 2, 3, 15, 16, 17, 31, 33, 64, 127, 1000, 5000])
@pytest.mark.parametrize("is_ascend", [True, False])
def test_row_lengths(n, is_ascend):
    x = data((3, n), "float32", seed=n)
    check_forward("sort", [x], {"is_ascend": is_ascend}, rtol=0, atol=0)
    check_forward("argsort", [x], {"is_ascend": is_ascend, "dtype": "int32"}, rtol=0, atol=0)
    check_forward("topk", [x], {"k": min(n, 7), "ret_typ": "both", "is_ascend": is_ascend}, rtol=0, atol=0)


def test_large_rows_with_threads_and_distinct_keys():
    """Enough work for the thread team (rows claimed from the shared counter), strided rows too."""
    x = data((48, 5000), "float64", seed=5, distinct=True)
    check_forward("sort", [x], {}, rtol=0, atol=0)
    check_forward("argsort", [x.T.copy()], {"axis": 0, "is_ascend": False, "dtype": "int64"}, rtol=0, atol=0)
    check_forward("sort", [x], {"axis": None}, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_very_long_rows_use_wide_digits(dtype):
    """Rows of 16K+ 32/64-bit keys are radix sorted with 11-bit digits: same order, ties and NaN."""
    rng = np.random.RandomState(12)
    x = (rng.randint(-3000, 3000, size=(2, 20000)) * (1 << 40 if dtype == "int64" else 1)).astype(dtype)
    if dtype.startswith("float"):
        x = x * 1e-3
        x[:, ::97] = np.nan
        x[:, 5::89] = -0.0
    check_forward("argsort", [x], {"dtype": "int32"}, rtol=0, atol=0)
    check_forward("sort", [x], {"is_ascend": False}, rtol=0, atol=0)
    check_forward("topk", [x.T.copy()], {"axis": 0, "k": 50, "ret_typ": "both"}, rtol=0, atol=0)


def test_many_short_rows():
    x = data((3000, 3), "int32", seed=6)
    check_forward("sort", [x], {"is_ascend": False}, rtol=0, atol=0)
    check_forward("topk", [x], {"k": 2, "ret_typ": "mask"}, rtol=0, atol=0)


def test_scalar_shaped_and_single_element():
    for shape in [(1,), (1, 1), (4, 1)]:
        x = data(shape, "float32")
        check_forward("sort", [x], {}, rtol=0, atol=0)
        check_forward("topk", [x], {"ret_typ": "both"}, rtol=0, atol=0)


def test_zero_length_rows_are_unknown_shapes():
    """A 0 dimension means "unknown" in MXNet 1.x shapes: as sum/argmax, sort cannot infer."""
    with pytest.raises(MXNetError):
        mx.nd.sort(mx.nd.array(np.zeros((3, 0), "float32")))


# ---- the NDArray API ----
def test_ndarray_functions_and_methods():
    x = data((5, 11), "float32", seed=7)
    a = mx.nd.array(x)
    assert_same(mx.nd.sort(a, axis=0).asnumpy(), reference("sort", x, {"axis": 0}))
    assert_same(a.sort(is_ascend=False).asnumpy(), reference("sort", x, {"is_ascend": False}))
    assert_same(a.argsort().asnumpy(), reference("argsort", x, {}))
    assert_same(a.topk(k=3, ret_typ="value").asnumpy(), reference("topk", x, {"k": 3, "ret_typ": "value"}))
    v, i = a.topk(k=2, ret_typ="both", axis=None)
    want_v, want_i = reference("topk", x, {"k": 2, "ret_typ": "both", "axis": None})
    assert_same(v.asnumpy(), want_v)
    assert_same(i.asnumpy(), want_i)
    assert mx.nd.sort(a, axis=None).shape == (55,)
    assert mx.nd.topk(a, axis=None, ret_typ="mask", k=4).shape == (5, 11)


def test_symbol_outputs_and_shapes():
    x = mx.sym.Variable("x")
    assert len(mx.sym.sort(x).list_outputs()) == 1  # positions and workspace are hidden
    both = mx.sym.topk(x, k=3, ret_typ="both", axis=0)
    assert len(both.list_outputs()) == 2
    _, outs, _ = both.infer_shape(x=(7, 4))
    assert outs == [(3, 4), (3, 4)]
    _, outs, _ = mx.sym.argsort(x, axis=None).infer_shape(x=(7, 4))
    assert outs == [(28,)]
    _, outs, _ = mx.sym.topk(x, ret_typ="mask", k=2, axis=None).infer_shape(x=(7, 4))
    assert outs == [(7, 4)]
    _, types, _ = both.infer_type(x="float64")
    assert types == [np.float64, np.float32]


def test_bound_executor_runs_twice():
    """The row counter lives in the workspace and is reset on every run."""
    x = mx.sym.Variable("x")
    ex = mx.sym.sort(x, is_ascend=False).simple_bind(mx.cpu(), x=(40, 300))
    for seed in (0, 1):
        v = data((40, 300), "float32", seed=seed)
        ex.arg_dict["x"][:] = v
        ex.forward()
        assert_same(ex.outputs[0].asnumpy(), reference("sort", v, {"is_ascend": False}))


# ---- gradients ----
@pytest.mark.parametrize("axis", [-1, 0, None])
@pytest.mark.parametrize("is_ascend", [True, False])
def test_sort_gradient(axis, is_ascend):
    x = data((4, 6), "float64", seed=8, distinct=True)
    check_gradient("sort", [x], {"axis": axis, "is_ascend": is_ascend})


@pytest.mark.parametrize("ret_typ", ["value", "both"])
@pytest.mark.parametrize("axis", [-1, 0, None])
def test_topk_gradient(ret_typ, axis):
    x = data((5, 6), "float64", seed=9, distinct=True)
    check_gradient("topk", [x], {"k": 3, "ret_typ": ret_typ, "axis": axis})


def test_topk_gradient_golden():
    """d/dx sum(topk(x, k=2) * w): w's entries land on the two largest positions, zeros elsewhere."""
    x = mx.sym.Variable("x")
    s = mx.sym.sum(mx.sym.topk(x, k=2, ret_typ="value") * mx.sym.Variable("w"))
    xv = np.array([[1.0, 5.0, 3.0, 4.0], [9.0, 2.0, 8.0, 7.0]])
    g = mx.nd.zeros((2, 4))
    ex = s.bind(mx.cpu(), args={"x": mx.nd.array(xv), "w": mx.nd.array([[10.0, 20.0], [30.0, 40.0]])},
                args_grad={"x": g}, grad_req={"x": "write", "w": "null"})
    ex.forward(is_train=True)
    ex.backward(mx.nd.ones((1,)))
    assert g.asnumpy().tolist() == [[0, 10, 0, 20], [30, 0, 40, 0]]


@pytest.mark.parametrize("opname,attrs", [("argsort", {}), ("topk", {"k": 2}), ("topk", {"ret_typ": "mask"})])
def test_index_outputs_have_zero_gradient(opname, attrs):
    x = mx.sym.Variable("x")
    s = mx.sym.sum(getattr(mx.sym, opname)(x, **attrs) * 3)
    g = mx.nd.ones((3, 5))
    ex = s.bind(mx.cpu(), args={"x": mx.nd.array(data((3, 5), "float32", distinct=True))}, args_grad={"x": g})
    ex.forward(is_train=True)
    ex.backward(mx.nd.ones((1,)))
    assert not g.asnumpy().any()


# ---- JSON, errors, compiler plumbing ----
@pytest.mark.parametrize("opname,attrs", [("sort", {"axis": 0, "is_ascend": False}), ("argsort", {"axis": None}),
                                          ("topk", {"k": 2, "ret_typ": "both", "dtype": "int32"}),
                                          ("topk", {"ret_typ": "mask", "axis": None, "k": 3})])
def test_json_roundtrip(opname, attrs):
    check_json_roundtrip(opname, [data((4, 6), "float32")], attrs)


def test_mxnet_json_loads():
    """A node as MXNet 1.9 writes it (string attributes, axis None)."""
    js = ('{"nodes": [{"op": "null", "name": "x", "inputs": []}, {"op": "topk", "name": "t", '
          '"attrs": {"axis": "None", "is_ascend": "True", "k": "2", "ret_typ": "value"}, '
          '"inputs": [[0, 0, 0]]}], "arg_nodes": [0], "node_row_ptr": [0, 1, 3], "heads": [[1, 0, 0]], '
          '"attrs": {"mxnet_version": ["int", 10900]}}')
    s = mx.sym.load_json(js)
    x = data((3, 4), "float32", distinct=True)
    (out,) = s.eval(ctx=mx.cpu(), x=mx.nd.array(x))
    assert_same(out.asnumpy(), np.sort(x.ravel())[:2])


@pytest.mark.parametrize("opname,attrs,words", [
    ("topk", {"k": 7}, ["topk", "k=7", "(3, 5)"]),
    ("topk", {"k": 16, "axis": None}, ["topk", "k=16", "(3, 5)"]),
    ("topk", {"axis": 2}, ["topk", "axis=2", "(3, 5)"]),
    ("sort", {"axis": -3}, ["sort", "axis=-3", "(3, 5)"]),
    ("argsort", {"axis": 5}, ["argsort", "axis=5", "(3, 5)"]),
    ("argsort", {"dtype": "bool"}, ["argsort", "dtype"]),
])
def test_errors_name_operator_attribute_and_shape(opname, attrs, words):
    with pytest.raises(MXNetError) as err:
        getattr(mx.nd, opname)(mx.nd.ones((3, 5)), **attrs)
    for w in words:
        assert w in str(err.value), (w, str(err.value))
    with pytest.raises(MXNetError):
        getattr(mx.sym, opname)(mx.sym.Variable("x"), **attrs).simple_bind(mx.cpu(), x=(3, 5))


def test_bad_ret_typ():
    with pytest.raises(MXNetError):
        mx.nd.topk(mx.nd.ones((3, 5)), ret_typ="values")


def test_sort_is_an_opaque_kernel():
    """Neighbours are not fused into the Sort stage; elementwise consumers of it fuse among themselves."""
    x = mx.sym.Variable("x")
    ops = kernels(mx.sym.exp(mx.sym.sort(x * 2)) + 1, x=(8, 16))
    assert ["sort"] in ops and ["_mul_scalar"] in ops and ["exp", "_plus_scalar"] in ops


def test_identical_sorts_share_one_kernel():
    x, y = mx.sym.Variable("x"), mx.sym.Variable("y")
    ex = mx.sym.Group([mx.sym.sort(x), mx.sym.sort(y), mx.sym.sort(x, is_ascend=False)]).simple_bind(
        mx.cpu(), grad_req="null", x=(4, 9), y=(4, 9))
    names = [k["name"] for k in ex.compile_report()["kernels"]]
    assert len(names) == 2, names


def test_workspace_is_planned_and_reused():
    """Scratch is a hidden output in the arena: dead after its launch, so the next sort reuses it."""
    x = mx.sym.Variable("x")
    ex = mx.sym.sort(mx.sym.sort(x) * 2, is_ascend=False).simple_bind(mx.cpu(), grad_req="null", x=(64, 1000))
    mem = ex.compile_report().memory
    ws = Sort.workspace_bytes(64 * 1000, 1000)
    assert mem["reused"] >= 1 and mem["arena_bytes"] < min(mem["naive_bytes"], 2 * ws)
