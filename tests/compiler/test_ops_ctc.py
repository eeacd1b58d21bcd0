"""CTCLoss: against independent numpy references (all alignments enumerated; the forward
recursion in probability space), finite differences, and numbers recorded from MXNet 1.9.1."""
import itertools

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from kiln.test_utils import check_numeric_gradient

from .helpers import backward


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _label_of(row, blank_first, length=None):
    pad = 0 if blank_first else -1
    row = [int(v) for v in row]
    if length is not None:
        return row[:int(length)]
    return row[:row.index(pad)] if pad in row else row


def _collapse(path, blank):
    out = []
    for k, c in enumerate(path):
        if c != blank and (k == 0 or c != path[k - 1]):
            out.append(c)
    return out


def brute_force(x, label, blank):
    """-log of the summed probability of every path (C**T of them) that collapses to ``label``."""
    p = _softmax(x.astype(np.float64))
    total = 0.0
    for path in itertools.product(range(p.shape[1]), repeat=p.shape[0]):
        if _collapse(path, blank) == list(label):
            total += np.prod(p[np.arange(p.shape[0]), path])
    return -np.log(total) if total > 0 else np.inf


def forward_prob(x, label, blank):
    """Graves' forward recursion in probability space (float64; small T only)."""
    p = _softmax(x.astype(np.float64))
    ext = [blank]
    for c in label:
        ext += [c, blank]
    a = np.zeros(len(ext))
    a[0] = p[0, ext[0]]
    if len(ext) > 1:
        a[1] = p[0, ext[1]]
    for t in range(1, len(p)):
        prev = a.copy()
        for s in range(len(ext)):
            v = prev[s] + (prev[s - 1] if s >= 1 else 0.0)
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                v += prev[s - 2]
            a[s] = v * p[t, ext[s]]
    return -np.log(a[-1] + (a[-2] if len(ext) > 1 else 0.0))


def reference(x, labels, blank_first=True, data_lengths=None, label_lengths=None, fn=forward_prob):
    """Per-element loss with the operator's conventions (infeasible: 0)."""
    t_max, n, c = x.shape
    blank = 0 if blank_first else c - 1
    out = []
    for i in range(n):
        lab = _label_of(labels[i], blank_first, None if label_lengths is None else label_lengths[i])
        tn = t_max if data_lengths is None else int(data_lengths[i])
        repeats = sum(a == b for a, b in zip(lab, lab[1:]))
        out.append(0.0 if len(lab) + repeats > tn else fn(x[:tn, i], lab, blank))
    return np.array(out)


def labels_for(rng, n, length, classes, blank_first, min_len=0):
    """Random labels padded MXNet's way (0 with the blank first, -1 with it last) and their lengths."""
    lo, hi = (1, classes) if blank_first else (0, classes - 1)
    pad = 0 if blank_first else -1
    lab = np.full((n, length), pad, np.float64)
    lens = rng.randint(min_len, length + 1, n)
    for i, k in enumerate(lens):
        lab[i, :k] = rng.randint(lo, hi, k)
    return lab, lens


def ctc(x, lab, dtype="float32", data_lengths=None, label_lengths=None, **kw):
    args = [mx.nd.array(x, dtype=dtype), mx.nd.array(lab, dtype=dtype)]
    if data_lengths is not None:
        args.append(mx.nd.array(data_lengths, dtype=dtype))
        kw["use_data_lengths"] = True
    if label_lengths is not None:
        args.append(mx.nd.array(label_lengths, dtype=dtype))
        kw["use_label_lengths"] = True
    return mx.nd.ctc_loss(*args, **kw).asnumpy()


@pytest.mark.parametrize("blank_first", [True, False])
def test_matches_brute_force_enumeration(blank_first):
    rng = np.random.RandomState(1)
    x = rng.randn(5, 4, 3)  # 3**5 paths per element
    a, b = (1, 2) if blank_first else (0, 1)
    pad = 0 if blank_first else -1
    lab = np.array([[a, b], [a, a], [b, pad], [pad, pad]], np.float64)  # plain, repeated, short, empty
    want = reference(x, lab, blank_first, fn=brute_force)
    got = ctc(x, lab, "float64", blank_label="first" if blank_first else "last")
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("blank_first", [True, False])
@pytest.mark.parametrize("lengths", ["none", "data", "label", "both"])
@pytest.mark.parametrize("shape", [(1, 1, 2, 1), (7, 3, 5, 3), (12, 4, 6, 5)])
def test_matches_forward_recursion(shape, lengths, blank_first, dtype):
    t, n, c, length = shape
    rng = np.random.RandomState(sum(shape))
    x = rng.uniform(-3, 3, (t, n, c))
    lab, lens = labels_for(rng, n, length, c, blank_first)
    dl = rng.randint(1, t + 1, n) if lengths in ("data", "both") else None
    ll = lens if lengths in ("label", "both") else None
    want = reference(x, lab, blank_first, dl, ll)
    got = ctc(x, lab, dtype, dl, ll, blank_label="first" if blank_first else "last")
    assert got.dtype == np.dtype(dtype)
    tol = 1e-5 if dtype == "float32" else 1e-11
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_repeated_labels_need_a_blank_between():
    x = np.random.RandomState(3).randn(4, 3, 3)
    lab = np.array([[1, 1, 1], [1, 1, 0], [1, 2, 1]], np.float64)  # 1,1,1 needs 5 frames: infeasible in 4
    got = ctc(x, lab, "float64")
    want = reference(x, lab, fn=brute_force)
    assert got[0] == 0.0 and np.isfinite(got[1:]).all()
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_infeasible_gives_zero_loss_and_zero_gradient():
    """MXNet 1.9.1 (warp-ctc) returns loss 0 when label + repeats exceed the sequence; its
    gradient is left unset there, here it is zero."""
    x = np.random.RandomState(4).randn(3, 2, 4)
    lab = np.array([[1, 2, 3], [2, 2, 2]], np.float64)  # 2,2,2 needs 5 frames
    (loss,), grads = backward(mx.sym.CTCLoss(mx.sym.var("data"), mx.sym.var("label")),
                              {"data": x, "label": lab}, wrt=["data"])
    assert loss[1] == 0.0 and loss[0] > 0
    assert (grads["data"][:, 1] == 0).all() and np.abs(grads["data"][:, 0]).sum() > 0
    # data lengths can make an element infeasible too
    got = ctc(x, lab, "float64", data_lengths=[2, 3])
    assert got[0] == 0.0


@pytest.mark.parametrize("case", ["label_too_big", "label_negative", "label_nan", "label_length_over",
                                  "label_length_negative", "data_length_over", "data_length_nan"])
def test_invalid_values_give_nan_for_that_element_only(case):
    x = np.random.RandomState(5).randn(4, 2, 3)
    lab = np.array([[1, 2], [2, 1]], np.float64)
    dl, ll = np.array([4.0, 4.0]), np.array([2.0, 2.0])
    if case.startswith("label_length"):
        ll[0] = 3 if case.endswith("over") else -1
    elif case.startswith("data_length"):
        dl[0] = 5 if case.endswith("over") else np.nan
    else:
        lab[0, 1] = {"label_too_big": 3, "label_negative": -2, "label_nan": np.nan}[case]
    sym = mx.sym.CTCLoss(mx.sym.var("data"), mx.sym.var("label"), mx.sym.var("dl"), mx.sym.var("ll"),
                         use_data_lengths=True, use_label_lengths=True)
    (loss,), grads = backward(sym, {"data": x, "label": lab, "dl": dl, "ll": ll}, wrt=["data"])
    assert np.isnan(loss[0]) and np.isnan(grads["data"][:, 0]).all()
    assert np.isfinite(loss[1]) and np.isfinite(grads["data"][:, 1]).all()


def test_padding_and_blank_inside_label_lengths():
    """Without label_lengths a label ends at its first padding value; with them the values are
    used as given (a blank inside is a blank state, as in MXNet)."""
    x = np.random.RandomState(6).randn(6, 2, 4)
    lab = np.array([[2, 0, 3], [0, 0, 0]], np.float64)
    got = ctc(x, lab, "float64")
    np.testing.assert_allclose(got, reference(x, lab), rtol=1e-10)
    last = ctc(x, np.array([[1, -1, 2], [-1, 0, 0]]), "float64", blank_label="last")
    np.testing.assert_allclose(last, reference(x, np.array([[1, -1, 2], [-1, 0, 0]]), False), rtol=1e-10)
    assert np.isfinite(ctc(x, np.array([[1, 0, 2], [0, 0, 0]]), "float64", label_lengths=[3, 0])).all()


@pytest.mark.parametrize("lengths", [False, True])
def test_gradient_matches_finite_differences(lengths):
    rng = np.random.RandomState(7)
    x = rng.randn(5, 3, 4)
    lab = np.array([[1, 2, 2], [3, 1, 0], [2, 0, 0]], np.float64)
    args = [mx.sym.var("data"), mx.sym.var("label")]
    loc = {"data": x, "label": lab}
    kw = {}
    if lengths:
        args += [mx.sym.var("dl"), mx.sym.var("ll")]
        loc.update(dl=np.array([5.0, 4.0, 3.0]), ll=np.array([3.0, 2.0, 1.0]))
        kw = dict(use_data_lengths=True, use_label_lengths=True)
    sym = mx.sym.CTCLoss(*args, blank_label="first", **kw)
    check_numeric_gradient(sym, loc, numeric_eps=1e-5, rtol=1e-5, atol=1e-7, grad_nodes=["data"])


def test_gradient_is_scaled_per_element_by_the_head_gradient():
    x = np.random.RandomState(8).randn(4, 3, 3)
    lab = np.array([[1, 2], [2, 0], [1, 1]], np.float64)
    sym = mx.sym.CTCLoss(mx.sym.var("data"), mx.sym.var("label"))
    _, ones = backward(sym, {"data": x, "label": lab}, wrt=["data"])
    head = np.array([2.0, -0.5, 0.0])
    _, scaled = backward(sym, {"data": x, "label": lab}, head_grads=[head], wrt=["data"])
    np.testing.assert_allclose(scaled["data"], ones["data"] * head[None, :, None], rtol=1e-12)
    # each time step's gradient is softmax - posterior: it sums to 0 over the classes
    np.testing.assert_allclose(ones["data"].sum(axis=2), 0, atol=1e-12)


def test_long_sequences_stay_finite():
    """Log space: T=300 with peaked activations underflows any probability-space recursion."""
    rng = np.random.RandomState(9)
    x = rng.randn(300, 2, 8) * 8
    lab, _ = labels_for(rng, 2, 40, 8, True, min_len=40)
    for dtype in ("float32", "float64"):
        got = ctc(x, lab, dtype)
        assert np.isfinite(got).all() and (got > 300).all()
    want = mx.nd.CTCLoss(mx.nd.array(x, dtype="float64"), mx.nd.array(lab, dtype="float64")).asnumpy()
    np.testing.assert_allclose(ctc(x, lab, "float32"), want, rtol=1e-4)


def _grid(shape, a=1.3, b=0.7):
    """Deterministic inputs, written identically in the MXNet script that produced the goldens."""
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    return (np.sin(a * i) * 2 + np.cos(b * i * i)).reshape(shape).astype(np.float32)


# Recorded from MXNet 1.9.1 (pip mxnet 1.9.1, CPU): data = _grid((6, 3, 5)) in float32,
# l = mx.nd.ctc_loss(data, label, ...) under autograd.record(), l.backward(mx.nd.array([1, 2, 0.5]));
# values printed with repr(l.asnumpy().tolist()) and of data.grad[1, 0].
GOLDEN = {
    "first": ([[1, 2, 0], [3, 3, 4], [4, 0, 0]], {},
              [5.933392524719238, 8.058801651000977, 3.983854293823242],
              [0.09736764430999756, -0.1360042542219162, -0.027702152729034424, 0.024894364178180695,
               0.04144424945116043]),
    "last": ([[0, 1, -1], [2, 2, 3], [3, -1, -1]], {"blank_label": "last"},
             [5.595866680145264, 10.708414077758789, 8.117990493774414],
             [-0.13318169116973877, 0.014945924282073975, 0.08783897012472153, 0.024894364178180695,
              0.00550287589430809]),
    "lengths": ([[1, 2, 2], [3, 1, 4], [4, 4, 1]], {"data_lengths": [6, 4, 5], "label_lengths": [3, 2, 1]},
                [7.850324630737305, 6.634494781494141, 2.2845613956451416],
                [0.22518670558929443, -0.017760738730430603, -0.2737651467323303, 0.024894364178180695,
                 0.04144424945116043]),
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_matches_mxnet_1_9_1(name):
    lab, kw, want_loss, want_grad_row = GOLDEN[name]
    kw = dict(kw)
    x = mx.nd.array(_grid((6, 3, 5)))
    args = [x, mx.nd.array(lab)]
    for key, flag in (("data_lengths", "use_data_lengths"), ("label_lengths", "use_label_lengths")):
        if key in kw:
            args.append(mx.nd.array(kw.pop(key)))
            kw[flag] = True
    x.attach_grad()
    with mx.autograd.record():
        loss = mx.nd.ctc_loss(*args, **kw)
    loss.backward(mx.nd.array([1.0, 2.0, 0.5]))
    np.testing.assert_allclose(loss.asnumpy(), want_loss, rtol=1e-6)
    np.testing.assert_allclose(x.grad.asnumpy()[1, 0], want_grad_row, rtol=1e-5, atol=1e-6)


def test_names_and_namespaces():
    data, label = mx.sym.var("data"), mx.sym.var("label")
    with mx.name.NameManager():
        s = mx.sym.CTCLoss(data, use_data_lengths=True, use_label_lengths=True)
    assert s.list_arguments() == ["data", "ctcloss0_label", "ctcloss0_data_lengths", "ctcloss0_label_lengths"]
    assert s.list_outputs() == ["ctcloss0_output0"]  # MXNet's name (two outputs, one visible)
    x, lab = mx.nd.array(_grid((4, 2, 3))), mx.nd.array([[1, 2], [2, 0]])
    want = mx.nd.CTCLoss(x, lab).asnumpy()
    for fn in (mx.nd.ctc_loss, mx.nd.contrib.ctc_loss, mx.nd.contrib.CTCLoss):
        np.testing.assert_array_equal(fn(x, lab).asnumpy(), want)
    for fn in (mx.sym.ctc_loss, mx.sym.contrib.ctc_loss, mx.sym.contrib.CTCLoss):
        out = fn(data, label).eval(ctx=mx.cpu(), data=x, label=lab)[0].asnumpy()
        np.testing.assert_array_equal(out, want)
    again = mx.sym.fromjson(mx.sym.CTCLoss(data, label, blank_label="last").tojson())
    assert again.list_arguments() == ["data", "label"]


@pytest.mark.parametrize("shapes, message", [
    (dict(data=(4, 3), label=(3, 2)), "data must be 3-d"),
    (dict(data=(4, 3, 5), label=(3, 2, 1)), "label must be 2-d"),
    (dict(data=(4, 3, 5), label=(2, 2)), "batch sizes differ"),
    (dict(data=(4, 3, 5), label=(3, 5)), "label length 5 exceeds the sequence length 4"),
    (dict(data=(4, 3, 5), label=(3, 2), dl=(3, 1)), "data_lengths must be 1-d"),
    (dict(data=(4, 3, 5), label=(3, 2), dl=(2,)), "batch sizes differ"),
])
def test_shape_errors_name_operator_and_shapes(shapes, message):
    sym = mx.sym.CTCLoss(mx.sym.var("data"), mx.sym.var("label"), mx.sym.var("dl"), use_data_lengths=True,
                         name="ctc")
    with pytest.raises(MXNetError, match=message) as err:
        sym.infer_shape(**shapes)
    assert "CTCLoss" in str(err.value) and "'ctc'" in str(err.value)


def test_lengths_shapes_are_inferred_and_float16_is_refused():
    sym = mx.sym.CTCLoss(mx.sym.var("data"), mx.sym.var("label"), use_data_lengths=True, use_label_lengths=True)
    args, outs, _ = sym.infer_shape(data=(6, 3, 5), label=(3, 4))
    assert args == [(6, 3, 5), (3, 4), (3,), (3,)] and outs == [(3,)]
    with pytest.raises(MXNetError, match="float32 or float64"):
        mx.nd.ctc_loss(mx.nd.zeros((2, 1, 3), dtype="float16"), mx.nd.zeros((1, 1), dtype="float16"))


def test_integer_labels_and_lengths():
    x = _grid((5, 2, 4))
    lab = np.array([[1, 3, 0], [2, 2, 1]])
    want = ctc(x, lab, "float32", data_lengths=[5, 4], label_lengths=[2, 3])
    got = mx.nd.ctc_loss(mx.nd.array(x), mx.nd.array(lab, dtype="int32"), mx.nd.array([5, 4], dtype="int64"),
                         mx.nd.array([2, 3], dtype="int32"), use_data_lengths=True, use_label_lengths=True)
    np.testing.assert_array_equal(got.asnumpy(), want)
