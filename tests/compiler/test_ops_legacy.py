"""MXNet 1.x operators of exported models (compiler/ops/vision.py, compiler/ops/misc.py): values and
gradients recorded from MXNet 1.9.1 (fixtures/make_legacy_ops_golden.py), numpy references,
finite-difference gradients, JSON round trips and a symbol JSON written by MXNet."""
import json
import os

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from tests.compiler.helpers import backward, forward
from tests.op_harness import check_forward, check_gradient, check_json_roundtrip

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
GOLDEN = np.load(os.path.join(HERE, "legacy_ops_golden.npz"))

# case in the fixture -> (operator, attributes as MXNet's call had them, spelled for kiln's symbol)
CASES = {
    "lrn_a": ("LRN", dict(nsize=3, alpha=0.01, beta=0.75, knorm=2.0)),
    "lrn_b": ("LRN", dict(nsize=5, alpha=0.3, beta=0.6, knorm=1.0)),  # window wider than the channels
    "l2n_instance": ("L2Normalization", dict(mode="instance")),
    "l2n_channel": ("L2Normalization", dict(mode="channel")),
    "l2n_spatial": ("L2Normalization", dict(mode="spatial")),
    "l2n_eps": ("L2Normalization", dict(mode="channel", eps=0.5)),
    "crop_hw": ("Crop", dict(num_args=1, h_w=(2, 3), offset=(1, 2))),
    "crop_center": ("Crop", dict(num_args=1, h_w=(3, 2), center_crop=True)),
    "crop_like": ("Crop", dict(num_args=2, center_crop=True)),
    "crop_like_off": ("Crop", dict(num_args=2, offset=(2, 1))),
    "hard_sigmoid": ("hard_sigmoid", dict(alpha=0.3, beta=0.4)),  # includes both saturation edges
    "softmin": ("softmin", dict(axis=1, temperature=2.0)),
    "softmin_def": ("softmin", {}),
    "resize_size": ("_contrib_BilinearResize2D", dict(height=5, width=3)),
    "resize_up": ("_contrib_BilinearResize2D", dict(height=7, width=9)),
    "resize_scale": ("_contrib_BilinearResize2D", dict(scale_height=1.5, scale_width=0.6)),
    "resize_odd": ("_contrib_BilinearResize2D", dict(mode="odd_scale", scale_height=2.0, scale_width=2.0)),
    "resize_like": ("_contrib_BilinearResize2D", dict(mode="like")),
    "resize_even": ("_contrib_BilinearResize2D", dict(mode="to_even_up")),
    "resize_noalign": ("_contrib_BilinearResize2D", dict(height=7, width=3, align_corners=False)),
    "resize_one": ("_contrib_BilinearResize2D", dict(height=1, width=4)),
    "adaptive_34": ("_contrib_AdaptiveAvgPooling2D", dict(output_size=(3, 4))),
    "adaptive_2": ("_contrib_AdaptiveAvgPooling2D", dict(output_size=2)),
    "adaptive_g": ("_contrib_AdaptiveAvgPooling2D", {}),
    "adaptive_up": ("_contrib_AdaptiveAvgPooling2D", dict(output_size=(5, 4))),  # overlapping bins
    "split_idx": ("_split_v2", dict(indices=(0, 2, 3), axis=1)),  # as mx.nd.split_v2(x, (2, 3), axis=1)
    "split_sec": ("_split_v2", dict(indices=(0, 1, 2), axis=-1, squeeze_axis=True)),
    "moments": ("moments", dict(axes=(0, 2))),
    "moments_keep": ("moments", dict(axes=(1,), keepdims=True)),
    "moments_all": ("moments", dict(axes=(0, 1))),
    "div_sqrt_dim": ("_contrib_div_sqrt_dim", {}),
    "arange_like": ("_contrib_arange_like", dict(start=1.5, step=0.5, repeat=2)),
    "arange_like_ax": ("_contrib_arange_like", dict(start=-2, step=3, axis=1)),
    "arange_like_int": ("_contrib_arange_like", dict(start=1, step=2, repeat=3)),
    "conv_v1": ("Convolution_v1", dict(kernel=(3, 2), stride=(2, 1), pad=(1, 0), num_filter=3)),
    "conv_v1_grp": ("Convolution_v1", dict(kernel=(2, 2), num_filter=4, num_group=2, no_bias=True, dilate=(2, 1))),
    "pool_v1_max": ("Pooling_v1", dict(kernel=(2, 3), stride=(2, 2), pool_type="max")),
    "pool_v1_avg_full": ("Pooling_v1", dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg",
                                            pooling_convention="full")),
    "pool_v1_sum": ("Pooling_v1", dict(kernel=(2, 2), pool_type="sum")),
    "pool_v1_global": ("Pooling_v1", dict(kernel=(1, 1), global_pool=True, pool_type="avg")),
    "roipool": ("ROIPooling", dict(pooled_size=(2, 3), spatial_scale=0.5)),
    "roipool_1": ("ROIPooling", dict(pooled_size=(3, 2), spatial_scale=1.0)),
    "roialign_s2": ("_contrib_ROIAlign", dict(pooled_size=(2, 3), spatial_scale=0.5, sample_ratio=2)),
    "roialign_aligned": ("_contrib_ROIAlign", dict(pooled_size=(2, 2), spatial_scale=0.75, sample_ratio=1,
                                                   aligned=True)),
    "roialign_auto": ("_contrib_ROIAlign", dict(pooled_size=(2, 2), spatial_scale=0.5, sample_ratio=-1)),
    "roialign_ps": ("_contrib_ROIAlign", dict(pooled_size=(2, 2), spatial_scale=0.5, sample_ratio=2,
                                              position_sensitive=True)),
    "amp_cast": ("amp_cast", dict(dtype="float16")),
}


def golden(case, what):
    return [GOLDEN["%s/%s%d" % (case, what, k)] for k in range(8) if "%s/%s%d" % (case, what, k) in GOLDEN]


@pytest.mark.parametrize("case", sorted(CASES))
def test_values_and_gradients_match_mxnet(case):
    op, attrs = CASES[case]
    ins, outs, ogs = golden(case, "in"), golden(case, "out"), golden(case, "og")
    names = ["x%d" % k for k in range(len(ins))]
    sym = getattr(mx.sym, op)(*[mx.sym.var(n) for n in names], name="op", **attrs)
    if ogs:
        got, grads = backward(sym, dict(zip(names, ins)), head_grads=ogs)
    else:
        got, grads = forward(sym, **dict(zip(names, ins))), {}
    assert len(got) == len(outs)
    for g, w in zip(got, outs):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
        np.testing.assert_allclose(g.astype(np.float64), w, rtol=1e-4, atol=2e-5)
    for k, w in enumerate(golden(case, "grad")):
        if op in ("ROIPooling", "_contrib_ROIAlign") and k == 1:
            continue  # MXNet gives rois no gradient (zeros); kiln's is zero as well
        np.testing.assert_allclose(grads[names[k]], w, rtol=1e-4, atol=2e-5, err_msg="input %d" % k)


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_reference_agrees_with_mxnet(case):
    """The references the other checks (and generic kernels) rely on are MXNet's semantics too."""
    op, attrs = CASES[case]
    check_forward(op, golden(case, "in"), attrs, rtol=1e-4, atol=2e-5, expected=golden(case, "out"))
    check_forward(op, golden(case, "in"), attrs, rtol=1e-4, atol=2e-5)


def test_amp_types_follow_mxnet():
    """amp_cast touches only float16/float32 inputs; amp_multicast casts those to the widest
    (narrowest) of them. MXNet 1.9.1's non-narrow multicast starts its widest type at the first
    input's, so a float16 input next to a leading float64/int32 becomes float64/int32: a bug kiln
    does not copy (those rows are skipped below and listed)."""
    types = json.load(open(os.path.join(HERE, "legacy_ops_types.json")))
    deviations = []
    for key, want in types.items():
        parts = key.split()
        if parts[0] == "cast":
            s = mx.sym.amp_cast(mx.sym.var("a"), dtype=parts[2])
            got = s.infer_type(a=parts[1])[1][0]
            assert np.dtype(got).name == want, key
            continue
        narrow = parts[3] == "True"
        s = mx.sym.amp_multicast(mx.sym.var("a"), mx.sym.var("b"), num_outputs=2, cast_narrow=narrow)
        got = [np.dtype(t).name for t in s.infer_type(a=parts[1], b=parts[2])[1]]
        if got != want:
            deviations.append(key)
    assert deviations == ["multicast float64 float16 False"]
    s = mx.sym.amp_multicast(mx.sym.var("a"), mx.sym.var("b"), num_outputs=2)
    assert [np.dtype(t).name for t in s.infer_type(a="int32", b="float16")[1]] == ["int32", "float16"]


def test_amp_values_and_gradients():
    x = np.random.RandomState(0).uniform(-2, 2, (2, 3)).astype("float32")
    y = x.astype("float16")
    a, b = mx.nd.array(y, dtype="float16"), mx.nd.array(x)
    a.attach_grad()
    b.attach_grad()
    with mx.autograd.record():
        u, v = mx.nd.amp_multicast(a, b, num_outputs=2)
        z = (u * v).sum()
    z.backward()
    assert u.dtype == np.float32 and v.dtype == np.float32
    np.testing.assert_array_equal(u.asnumpy(), y.astype("float32"))
    assert a.grad.dtype == np.float16
    np.testing.assert_allclose(a.grad.asnumpy(), x.astype("float16"), rtol=1e-3)
    np.testing.assert_allclose(b.grad.asnumpy(), y.astype("float32"), rtol=1e-6)
    check_forward("amp_multicast", [y, x], {"num_outputs": 2, "cast_narrow": True})
    check_forward("amp_cast", [np.arange(6, dtype="int32")], {"dtype": "float16"})
    with pytest.raises(MXNetError, match="bfloat16"):
        forward(mx.sym.amp_cast(mx.sym.var("a"), dtype="bfloat16"), a=x)


# ---- finite-difference gradients (float64) ----
def r64(shape, seed, lo=-1.0, hi=1.0):
    return np.random.RandomState(seed).uniform(lo, hi, shape)


ROIS = np.array([[0, 0.6, 0.4, 6.3, 5.2], [1, 1.3, 2.2, 9.7, 7.4], [0, -3.0, 1.0, 2.0, 12.0]])
GRADS = [
    ("LRN", [r64((2, 4, 2, 3), 1, -2, 2)], dict(nsize=3, alpha=0.1, beta=0.75, knorm=1.5), None),
    ("LRN", [r64((1, 3, 2, 2), 2, -2, 2)], dict(nsize=5, alpha=0.5, beta=0.6, knorm=1.0), None),
    ("L2Normalization", [r64((2, 3, 2, 2), 3)], dict(mode="instance"), None),
    ("L2Normalization", [r64((2, 3, 2, 2), 4)], dict(mode="channel"), None),
    ("L2Normalization", [r64((2, 3, 2, 2), 5)], dict(mode="spatial"), None),
    ("Crop", [r64((1, 2, 5, 6), 6), r64((1, 1, 2, 3), 7)], dict(num_args=2, center_crop=True), [0]),
    ("Crop", [r64((1, 2, 4, 4), 8)], dict(num_args=1, h_w=(2, 3), offset=(1, 1)), None),
    ("hard_sigmoid", [np.array([-4.0, -1.3, 0.2, 0.9, 3.0])], dict(alpha=0.3, beta=0.4), None),
    ("softmin", [r64((2, 3, 2), 9)], dict(axis=1, temperature=0.7), None),
    ("_contrib_BilinearResize2D", [r64((1, 2, 3, 4), 10)], dict(height=5, width=3), None),
    ("_contrib_BilinearResize2D", [r64((1, 1, 4, 3), 11)], dict(scale_height=0.7, scale_width=2.5), None),
    ("_contrib_BilinearResize2D", [r64((1, 1, 3, 4), 12)], dict(height=4, width=6, align_corners=False), None),
    ("_contrib_BilinearResize2D", [r64((1, 1, 3, 3), 13), r64((1, 1, 4, 5), 14)], dict(mode="like"), [0]),
    ("_contrib_AdaptiveAvgPooling2D", [r64((1, 2, 5, 4), 15)], dict(output_size=(3, 3)), None),
    ("_contrib_AdaptiveAvgPooling2D", [r64((1, 1, 2, 3), 16)], dict(output_size=(3, 5)), None),
    ("_split_v2", [r64((2, 5, 3), 17)], dict(indices=(0, 1, 4), axis=1), None),
    ("_split_v2", [r64((2, 3), 18)], dict(indices=(), sections=3, axis=1, squeeze_axis=True), None),
    ("moments", [r64((3, 2, 4), 19)], dict(axes=(0, 2)), None),
    ("moments", [r64((2, 3), 20)], dict(axes=(1,), keepdims=True), None),
    ("_contrib_div_sqrt_dim", [r64((2, 5), 21)], {}, None),
    ("amp_cast", [r64((2, 3), 22)], dict(dtype="float32"), None),
    ("amp_multicast", [r64((2, 3), 23), r64((3,), 24)], dict(num_outputs=2), None),
    ("Convolution_v1", [r64((1, 2, 4, 4), 25), r64((2, 2, 2, 2), 26), r64((2,), 27)],
     dict(kernel=(2, 2), num_filter=2, pad=(1, 0)), None),
    ("Pooling_v1", [r64((1, 1, 5, 4), 28)], dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg",
                                                  pooling_convention="full"), None),
    ("Pooling_v1", [r64((1, 1, 4, 4), 29)], dict(kernel=(2, 2), stride=(2, 2)), None),
    ("ROIPooling", [r64((2, 2, 6, 7), 30), ROIS], dict(pooled_size=(2, 2), spatial_scale=0.5), [0]),
    ("_contrib_ROIAlign", [r64((2, 2, 6, 7), 31), ROIS], dict(pooled_size=(2, 3), spatial_scale=0.5,
                                                            sample_ratio=2), [0]),
    ("_contrib_ROIAlign", [r64((2, 4, 6, 7), 32), ROIS], dict(pooled_size=(1, 2), spatial_scale=0.7,
                                                            sample_ratio=-1, aligned=True,
                                                            position_sensitive=True), [0]),
]


@pytest.mark.parametrize("op,inputs,attrs,nodes", GRADS, ids=["%s-%d" % (g[0], i) for i, g in enumerate(GRADS)])
def test_gradients_match_finite_differences(op, inputs, attrs, nodes):
    check_forward(op, inputs, attrs, rtol=1e-10)
    check_gradient(op, inputs, attrs, grad_nodes=nodes, rtol=1e-4, atol=1e-6, eps=1e-5)


def test_arange_like_passes_no_gradient_and_reads_only_the_shape():
    x = r64((2, 3), 0)
    outs, grads = backward(mx.sym._contrib_arange_like(mx.sym.var("x"), start=2, step=-1), {"x": x},
                           head_grads=[np.ones((2, 3))])
    np.testing.assert_array_equal(outs[0], 2.0 - np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(grads["x"], np.zeros((2, 3)))


# ---- edge behaviours ----
def test_lrn_hidden_norm_and_channel_borders():
    """tmp_norm is MXNet's hidden second output; border channels sum only existing neighbours."""
    x = r64((1, 3, 1, 1), 1, 1, 2)
    s = mx.sym.LRN(mx.sym.var("x"), nsize=3, alpha=0.3, beta=1.0, knorm=1.0)
    assert s.list_outputs() == ["lrn0_output"] or len(s.list_outputs()) == 1
    sq = x[0, :, 0, 0] ** 2
    norm = 1.0 + 0.1 * np.array([sq[0] + sq[1], sq.sum(), sq[1] + sq[2]])
    np.testing.assert_allclose(forward(s, x=x)[0][0, :, 0, 0], x[0, :, 0, 0] / norm)
    data = json.loads(s.tojson())
    assert data["node_row_ptr"] == [0, 1, 3]  # two outputs, as MXNet writes LRN


def test_crop_center_rounds_offsets_down():
    x = np.arange(42.0).reshape(1, 1, 6, 7)
    (out,) = forward(mx.sym.Crop(mx.sym.var("x"), num_args=1, h_w=(3, 2), center_crop=True), x=x)
    np.testing.assert_array_equal(out, x[:, :, 1:4, 2:4])


def test_resize_keeps_corners_with_align_corners():
    x = r64((1, 1, 3, 4), 3)
    (out,) = forward(mx.sym.contrib.BilinearResize2D(mx.sym.var("x"), height=7, width=5), x=x)
    for (i, j), (p, q) in {(0, 0): (0, 0), (0, 4): (0, 3), (6, 0): (2, 0), (6, 4): (2, 3)}.items():
        assert out[0, 0, i, j] == pytest.approx(x[0, 0, p, q])


@pytest.mark.parametrize("make,shapes,message", [
    (lambda x, y: mx.sym.LRN(x, nsize=4), [(1, 3, 2, 2)], "odd"),
    (lambda x, y: mx.sym.Crop(x, num_args=1, h_w=(5, 2)), [(1, 1, 4, 4)], "does not fit"),
    (lambda x, y: mx.sym.contrib.ROIAlign(x, y, pooled_size=(2, 2), spatial_scale=1.0), [(1, 2, 4, 4), (3, 4)],
     "rois"),
    (lambda x, y: mx.sym.moments(x), [(2, 3)], "axes"),
    (lambda x, y: mx.sym._split_v2(x, indices=(), sections=4, axis=1), [(2, 3)], "divisible"),
])
def test_shape_errors_name_the_problem(make, shapes, message):
    s = make(mx.sym.var("x"), mx.sym.var("y"))
    feeds = dict(zip(["x", "y"], shapes))
    with pytest.raises(MXNetError, match=message):
        s.infer_shape(**feeds)


# ---- JSON ----
@pytest.mark.parametrize("op,inputs,attrs,nodes", GRADS[::3], ids=["%s-%d" % (g[0], 3 * i) for i, g in
                                                                   enumerate(GRADS[::3])])
def test_json_round_trip(op, inputs, attrs, nodes):
    check_json_roundtrip(op, [x.astype("float32") for x in inputs], attrs)


def test_frontend_functions_exist():
    for name in ("LRN", "L2Normalization", "Crop", "amp_cast", "amp_multicast", "hard_sigmoid", "softmin",
                 "_split_v2", "moments", "Convolution_v1", "Pooling_v1", "ROIPooling"):
        assert callable(getattr(mx.sym, name)) and callable(getattr(mx.nd, name))
    for name in ("BilinearResize2D", "AdaptiveAvgPooling2D", "div_sqrt_dim", "arange_like", "ROIAlign"):
        assert callable(getattr(mx.sym.contrib, name)) and callable(getattr(mx.nd.contrib, name))
    x = mx.nd.array(r64((1, 2, 4, 4), 0))
    assert mx.nd.contrib.AdaptiveAvgPooling2D(x, output_size=2).shape == (1, 2, 2, 2)
    assert mx.nd.contrib.BilinearResize2D(x, height=3, width=6).shape == (1, 2, 3, 6)


def test_symbol_json_written_by_mxnet_binds_and_matches():
    """A graph MXNet 1.9.1 wrote (Convolution_v1, LRN, Pooling_v1, BilinearResize2D, Crop,
    hard_sigmoid, L2Normalization, AdaptiveAvgPooling2D, _split_v2, softmin, moments)."""
    sym = mx.sym.load(os.path.join(HERE, "legacy_ops_graph.json"))
    args = {k.split("/", 2)[2]: GOLDEN[k] for k in GOLDEN.files if k.startswith("graph/arg/")}
    assert sorted(sym.list_arguments()) == sorted(args)
    exe = sym.bind(mx.cpu(), {k: mx.nd.array(v) for k, v in args.items()})
    outs = [o.asnumpy() for o in exe.forward()]
    want = golden("graph", "out")
    assert len(outs) == len(want)
    for g, w in zip(outs, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
    again = mx.sym.load_json(sym.tojson())
    assert json.loads(again.tojson())["nodes"] == json.loads(sym.tojson())["nodes"]
    ops = [n["op"] for n in json.loads(sym.tojson())["nodes"]]
    assert "Convolution_v1" in ops and "Pooling_v1" in ops and "_split_v2" in ops


def test_split_v2_python_functions_write_what_mxnet_writes():
    x = np.arange(20.0).reshape(2, 5, 2)
    parts = mx.nd.split_v2(mx.nd.array(x), (2, 3), axis=1)
    for got, want in zip(parts, np.split(x, [2, 3], axis=1)):
        np.testing.assert_array_equal(got.asnumpy(), want)
    assert [p.shape for p in mx.nd.split_v2(mx.nd.array(x), 2, axis=0, squeeze_axis=True)] == [(5, 2), (5, 2)]
    s = mx.sym.split_v2(mx.sym.var("a"), (1, 3), axis=1)
    graph = json.load(open(os.path.join(HERE, "legacy_ops_graph.json")))
    mx_attrs = next(n["attrs"] for n in graph["nodes"] if n["op"] == "_split_v2")
    assert json.loads(s.tojson())["nodes"][1]["attrs"] == mx_attrs
