"""The fused RNN operator: numpy reference, gradients, shape inference, training dropout."""
import itertools

import numpy as np
import pytest

import kiln as mx
from kiln import autograd
from kiln.base import MXNetError
from kiln.compiler.ops import registry
from kiln.compiler.ops.rnn import GATES, param_layout


def _case(mode, nl, bi, t=3, n=2, i=3, h=2, dtype="float32", seed=0):
    rng = np.random.RandomState(seed)
    d = 2 if bi else 1
    _, total = param_layout({"mode": mode, "state_size": h, "num_layers": nl, "bidirectional": bi}, i)
    arrays = [rng.uniform(-1, 1, (t, n, i)), rng.uniform(-0.6, 0.6, (total,)), rng.uniform(-1, 1, (nl * d, n, h))]
    if mode == "lstm":
        arrays.append(rng.uniform(-1, 1, (nl * d, n, h)))
    return [a.astype(dtype) for a in arrays]


def _attrs(mode, nl, bi, **kw):
    return dict(state_size=2, num_layers=nl, bidirectional=bi, mode=mode, **kw)


def _reference(arrays, **attrs):
    op = registry.get("RNN")
    params = op.parse_attrs(op.format_attrs(attrs, "rnn"), "rnn")
    out = op.reference(params, *arrays)
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("mode,nl,bi", list(itertools.product(sorted(GATES), [1, 2], [False, True])))
def test_forward_matches_reference(mode, nl, bi):
    arrays = _case(mode, nl, bi)
    for state_outputs in (False, True):
        attrs = _attrs(mode, nl, bi, state_outputs=state_outputs)
        got = mx.nd.RNN(*[mx.nd.array(a) for a in arrays], **attrs)
        got = got if isinstance(got, list) else [got]
        want = _reference(arrays, **attrs)
        assert len(got) == len(want) == (1 if not state_outputs else 3 if mode == "lstm" else 2)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.asnumpy(), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", sorted(GATES))
def test_gradient_by_finite_differences(mode):
    """float64, tiny sizes: executor gradients of a random projection of every output."""
    nl, bi = 2, mode in ("lstm", "gru")
    arrays = _case(mode, nl, bi, t=2, n=1, i=2, h=2, dtype="float64", seed=1)
    attrs = _attrs(mode, nl, bi, state_outputs=True)
    names = ["x", "w", "h", "c"][:len(arrays)]
    sym = mx.sym.RNN(*[mx.sym.var(k) for k in names], **attrs)
    outs = list(sym)
    rng = np.random.RandomState(2)
    ref = _reference(arrays, **attrs)
    proj = [rng.uniform(-1, 1, r.shape) for r in ref]
    args = {k: mx.nd.array(a, dtype="float64") for k, a in zip(names, arrays)}
    grads = {k: mx.nd.zeros(a.shape, dtype="float64") for k, a in zip(names, arrays)}
    ex = mx.sym.Group(outs).bind(mx.cpu(), args, args_grad=grads)
    ex.forward(is_train=True)
    ex.backward([mx.nd.array(p, dtype="float64") for p in proj])

    def loss(vals):
        return sum(float((o * p).sum()) for o, p in zip(_reference(vals, **attrs), proj))
    eps = 1e-6
    for k, name in enumerate(names):
        num = np.zeros(arrays[k].size)
        for j in range(arrays[k].size):
            plus = [a.copy() for a in arrays]
            minus = [a.copy() for a in arrays]
            plus[k].flat[j] += eps
            minus[k].flat[j] -= eps
            num[j] = (loss(plus) - loss(minus)) / (2 * eps)
        np.testing.assert_allclose(grads[name].asnumpy().ravel(), num, rtol=1e-5, atol=1e-7, err_msg=name)


def test_tape_gradient_equals_executor_gradient():
    arrays = _case("lstm", 2, True, seed=3)
    attrs = _attrs("lstm", 2, True, state_outputs=True)
    names = ["x", "w", "h", "c"]
    args = {k: mx.nd.array(a) for k, a in zip(names, arrays)}
    grads = {k: mx.nd.zeros(a.shape) for k, a in zip(names, arrays)}
    ex = mx.sym.Group(list(mx.sym.RNN(*[mx.sym.var(k) for k in names], **attrs))).bind(mx.cpu(), args,
                                                                                       args_grad=grads)
    outs = ex.forward(is_train=True)
    heads = [mx.nd.ones(o.shape) * (i + 1) for i, o in enumerate(outs)]
    ex.backward(heads)
    nds = [mx.nd.array(a) for a in arrays]
    for a in nds:
        a.attach_grad()
    with autograd.record():
        res = mx.nd.RNN(*nds, **attrs)
    autograd.backward(res, heads)
    for k, a in zip(names, nds):
        np.testing.assert_allclose(a.grad.asnumpy(), grads[k].asnumpy(), rtol=1e-5, atol=1e-6)


def test_second_order_gradient_by_finite_differences():
    """d/dx of sum(grad_x(sum(out))^2), through the tape's _rnn_backward, against central
    differences of the first-order gradient computed the same way."""
    arrays = _case("gru", 1, False, t=2, n=1, i=2, h=2, dtype="float64", seed=5)
    attrs = _attrs("gru", 1, False)
    rest = [mx.nd.array(a, dtype="float64") for a in arrays[1:]]

    def first_order_norm(xv, want_grad=False):
        x = mx.nd.array(xv, dtype="float64")
        x.attach_grad()
        with autograd.record():
            g = autograd.grad(mx.nd.RNN(x, *rest, **attrs).sum(), [x], create_graph=True)[0]
            z = (g * g).sum()
        if want_grad:
            z.backward()
            return x.grad.asnumpy()
        return float(z.asscalar())

    x0 = arrays[0]
    got = first_order_norm(x0, want_grad=True)
    eps, want = 1e-5, np.zeros_like(x0)
    for idx in np.ndindex(x0.shape):
        up, down = x0.copy(), x0.copy()
        up[idx] += eps
        down[idx] -= eps
        want[idx] = (first_order_norm(up) - first_order_norm(down)) / (2 * eps)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)


def test_parameter_shape_is_inferred_and_checked():
    sym = mx.sym.RNN(mx.sym.var("x"), state_size=4, num_layers=2, bidirectional=True, mode="lstm",
                     state_outputs=True, name="rnn")
    assert sym.list_arguments() == ["x", "rnn_parameters", "rnn_state", "rnn_state_cell"]
    assert sym.list_outputs() == ["rnn_output", "rnn_state_output", "rnn_statecell_output"]
    args, outs, _ = sym.infer_shape(x=(5, 3, 6))
    assert args == [(5, 3, 6), (832,), (4, 3, 4), (4, 3, 4)]  # MXNet 1.9.1 gives the same
    assert outs == [(5, 3, 8), (4, 3, 4), (4, 3, 4)]
    with pytest.raises(MXNetError, match=r"parameters has shape \(7,\).*need \(832,\)"):
        sym.infer_shape(x=(5, 3, 6), rnn_parameters=(7,))
    with pytest.raises(MXNetError, match="state has shape"):
        sym.infer_shape(x=(5, 3, 6), rnn_state=(4, 2, 4))
    with pytest.raises(MXNetError, match="3-d"):
        sym.infer_shape(x=(5, 6))


def test_unsupported_attributes_raise():
    arrays = _case("lstm", 1, False)
    with pytest.raises(NotImplementedError, match="projection_size"):
        mx.nd.RNN(*[mx.nd.array(a) for a in arrays], projection_size=1, **_attrs("lstm", 1, False))


def test_lstm_state_clip():
    arrays = _case("lstm", 1, False)
    attrs = _attrs("lstm", 1, False, state_outputs=True, lstm_state_clip_min=-0.1, lstm_state_clip_max=0.1)
    got = mx.nd.RNN(*[mx.nd.array(a) for a in arrays], **attrs)
    assert np.abs(got[2].asnumpy()).max() <= 0.1 + 1e-7
    np.testing.assert_allclose(got[0].asnumpy(), _reference(arrays, **attrs)[0], rtol=1e-5, atol=1e-6)


def test_dropout_between_layers_only_in_training():
    arrays = _case("gru", 2, False, t=4, n=8, h=2)
    attrs = _attrs("gru", 2, False, p=0.5)
    nds = [mx.nd.array(a) for a in arrays]
    want = _reference(arrays, **attrs)[0]
    np.testing.assert_allclose(mx.nd.RNN(*nds, **attrs).asnumpy(), want, rtol=1e-5, atol=1e-6)
    for a in nds:
        a.attach_grad()
    with autograd.record():
        out = mx.nd.RNN(*nds, **attrs)
    assert not np.allclose(out.asnumpy(), want)
    out.backward()
    assert np.isfinite(nds[1].grad.asnumpy()).all() and np.abs(nds[1].grad.asnumpy()).sum() > 0
    # the compiled training program: the mask is sampled once and its gradient reads it
    names = ["x", "w", "h"]
    ex = mx.sym.RNN(*[mx.sym.var(k) for k in names], **attrs).simple_bind(mx.cpu(), x=arrays[0].shape)
    for k, a in zip(names, arrays):
        ex.arg_dict[k][:] = a
    np.testing.assert_allclose(ex.forward(is_train=False)[0].asnumpy(), want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(ex.forward(is_train=True)[0].asnumpy(), want)
    ex.backward([mx.nd.ones(want.shape)])
    assert np.isfinite(ex.grad_dict["w"].asnumpy()).all()
