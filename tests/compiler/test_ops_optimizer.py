"""Optimiser update operators (compiler/ops/optimizer.py): numpy references, in-place use, mp forms.

Formulas were checked against MXNet 1.9.1 while developing; these tests check the compiled
kernels against the numpy references, and a few hand-computed values pin the formulas.
"""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError
from kiln.compiler.ops import registry
from tests.op_harness import check_forward

SHAPE = (3, 5)
COMMON = dict(lr=0.1, wd=0.01, rescale_grad=0.5, clip_gradient=0.2)

# name, number of state inputs, attributes, states must be non-negative
CASES = [
    ("sgd_update", 0, dict(COMMON), False),
    ("sgd_update", 0, dict(lr=0.3), False),
    ("sgd_mom_update", 1, dict(COMMON, momentum=0.9), False),
    ("nag_mom_update", 1, dict(COMMON, momentum=0.9), False),
    ("adam_update", 2, dict(COMMON, beta1=0.8, beta2=0.9, epsilon=1e-3), True),
    ("rmsprop_update", 1, dict(COMMON, gamma1=0.9, epsilon=1e-3, clip_weights=0.5), True),
    ("rmspropalex_update", 3, dict(COMMON, gamma1=0.9, gamma2=0.8, epsilon=1.0), True),
    ("ftrl_update", 2, dict(COMMON, lamda1=0.05, beta=1.5), True),
    ("signsgd_update", 0, dict(COMMON), False),
    ("signum_update", 1, dict(COMMON, momentum=0.9, wd_lh=0.02), False),
    ("lamb_update_phase1", 2, dict(wd=0.01, rescale_grad=0.5, clip_gradient=0.2, t=3, beta1=0.8, beta2=0.9,
                                   epsilon=1e-3), True),
    ("lamb_update_phase1", 2, dict(wd=0.01, t=1, bias_correction=False), True),
    ("ftml_update", 3, dict(lr=0.1, beta1=0.6, beta2=0.9, epsilon=1e-3, t=3, wd=0.01, rescale_grad=0.5,
                            clip_grad=0.2), True),
]


def _inputs(n_states, positive, dtype="float32", seed=0):
    rs = np.random.RandomState(seed)
    arrs = [rs.uniform(-1, 1, SHAPE).astype(dtype) for _ in range(2 + n_states)]
    if positive:
        arrs[2:] = [np.abs(a) for a in arrs[2:]]
    return arrs


@pytest.mark.parametrize("name,n_states,attrs,positive", CASES, ids=[c[0] for c in CASES])
def test_forward_matches_reference(name, n_states, attrs, positive):
    check_forward(name, _inputs(n_states, positive), attrs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,n_states,attrs,positive", CASES, ids=[c[0] for c in CASES])
def test_in_place_with_out(name, n_states, attrs, positive):
    """out=[weight, *states] on the input arrays updates them in place, as MXNet's mutable inputs."""
    arrs = _inputs(n_states, positive, seed=1)
    op = registry.get(name)
    want = op.reference(op.parse_attrs(op.format_attrs(attrs, "op"), "op"), *[a.copy() for a in arrs])
    nds = [mx.nd.array(a) for a in arrs]
    first = nds[0] if not name.startswith("lamb") else mx.nd.zeros(SHAPE)
    outs = [first] + nds[2:]
    got = getattr(mx.nd, name)(*nds, out=outs, **attrs)
    got = got if isinstance(got, (list, tuple)) else [got]
    assert all(g is o for g, o in zip(got, outs))
    for o, w in zip(outs, want):
        np.testing.assert_allclose(o.asnumpy(), w, rtol=1e-5, atol=1e-6)


def test_sgd_hand_values():
    w, g = mx.nd.array([1.0, -2.0]), mx.nd.array([0.5, 4.0])
    mx.nd.sgd_update(w, g, out=w, lr=0.1, wd=0.1, clip_gradient=1.0)
    # (1 - 0.01) * w - 0.1 * clip(g, 1)
    np.testing.assert_allclose(w.asnumpy(), [0.99 - 0.05, -1.98 - 0.1], rtol=1e-6)


def test_sgd_mom_repeated_steps():
    w, g, m = mx.nd.array([1.0]), mx.nd.array([1.0]), mx.nd.zeros((1,))
    for _ in range(3):
        mx.nd.sgd_mom_update(w, g, m, out=[w, m], lr=0.1, momentum=0.5)
    # mom: -0.1, -0.15, -0.175; weight: 1 - 0.425
    np.testing.assert_allclose(m.asnumpy(), [-0.175], rtol=1e-6)
    np.testing.assert_allclose(w.asnumpy(), [0.575], rtol=1e-6)


def test_nag_uses_updated_weight_for_momentum_decay():
    """MXNet 1.9 with out=weight: the momentum's wd term reads the new weight (hand-checked values)."""
    w, g, m = mx.nd.array([1.0]), mx.nd.array([0.2]), mx.nd.array([0.3])
    mx.nd.nag_mom_update(w, g, m, out=[w, m], lr=1.0, momentum=0.5, wd=0.1)
    np.testing.assert_allclose(w.asnumpy(), [0.625], rtol=1e-6)
    np.testing.assert_allclose(m.asnumpy(), [-0.1125], rtol=1e-5)


def test_lamb_phase2_ratio_and_bounds():
    w, g = np.ones((2, 2), np.float32), np.full((2, 2), 0.5, np.float32)
    for attrs, ratio in [(dict(lr=0.1), 1.5 / 0.7), (dict(lr=0.1, lower_bound=2.0), 2.0 / 0.7),
                         (dict(lr=0.1, upper_bound=0.2), 0.2 / 0.7)]:
        nw = mx.nd.array(w)
        mx.nd.lamb_update_phase2(nw, mx.nd.array(g), mx.nd.array([1.5]), mx.nd.array([0.7]), out=nw, **attrs)
        np.testing.assert_allclose(nw.asnumpy(), w - 0.1 * ratio * g, rtol=1e-6)
    nw = mx.nd.array(w)
    mx.nd.lamb_update_phase2(nw, mx.nd.array(g), mx.nd.array([0.0]), mx.nd.array([0.7]), out=nw, lr=0.1)
    np.testing.assert_allclose(nw.asnumpy(), w - 0.1 * g, rtol=1e-6)  # a zero norm gives ratio 1


@pytest.mark.parametrize("name,n_states,attrs", [
    ("mp_sgd_update", 0, dict(lr=0.1, wd=0.01)),
    ("mp_sgd_mom_update", 1, dict(lr=0.1, wd=0.01, momentum=0.9)),
    ("mp_nag_mom_update", 1, dict(lr=0.1, wd=0.01, momentum=0.9)),
])
def test_multi_precision(name, n_states, attrs):
    """float16 weight and gradient, float32 states and master copy; the weight is the copy's cast."""
    rs = np.random.RandomState(2)
    w32 = rs.uniform(-1, 1, SHAPE).astype(np.float32)
    g16 = rs.uniform(-1, 1, SHAPE).astype(np.float16)
    states = [rs.uniform(-1, 1, SHAPE).astype(np.float32) for _ in range(n_states)]
    op = registry.get(name)
    params = op.parse_attrs(op.format_attrs(attrs, "op"), "op")
    want = op.reference(params, w32.astype(np.float16), g16, *states, w32)
    nw, nw32 = mx.nd.array(w32, dtype="float16"), mx.nd.array(w32)
    nstates = [mx.nd.array(s) for s in states]
    getattr(mx.nd, name)(nw, mx.nd.array(g16, dtype="float16"), *nstates, nw32, out=[nw] + nstates + [nw32], **attrs)
    assert nw.dtype == np.float16 and nw32.dtype == np.float32
    np.testing.assert_allclose(nw32.asnumpy(), want[-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(nw.asnumpy(), nw32.asnumpy().astype(np.float16))
    for s, w in zip(nstates, want[1:-1]):
        np.testing.assert_allclose(s.asnumpy(), w, rtol=1e-5, atol=1e-6)


def test_errors_name_operator_and_values():
    w, g = mx.nd.ones((2, 2)), mx.nd.ones((2, 3))
    with pytest.raises(MXNetError, match="sgd_update"):
        mx.nd.sgd_update(w, g, lr=0.1)
    with pytest.raises(MXNetError, match="momentum_x"):
        mx.nd.sgd_mom_update(w, w, w, lr=0.1, momentum_x=0.9)
    with pytest.raises(MXNetError, match="lr"):
        mx.nd.sgd_update(w, w)  # lr is required, as in MXNet


def test_symbolic_outputs_are_named():
    s = mx.sym.adam_update(mx.sym.Variable("w"), mx.sym.Variable("g"), mx.sym.Variable("m"), mx.sym.Variable("v"),
                           lr=0.1, name="upd")
    assert s.list_outputs() == ["upd_weight", "upd_mean", "upd_var"]
    assert s.list_arguments() == ["w", "g", "m", "v"]


@pytest.mark.parametrize("name,n_states,attrs,positive", CASES, ids=[c[0] for c in CASES])
def test_hp_form_equals_public_form(name, n_states, attrs, positive):
    """``_<op>_hp`` (what the optimisers call) reads lr/wd/rescale_grad (LAMB: bias corrections)
    from a float64 vector at run time and computes exactly what the attribute form computes."""
    from kiln.compiler.ops.optimizer import HP_FORMS
    hp_name, keys = HP_FORMS[name]
    arrs = _inputs(n_states, positive, seed=3)
    pub = [mx.nd.array(a) for a in arrs]
    dyn = [mx.nd.array(a) for a in arrs]
    out_pub = [mx.nd.zeros(SHAPE)] + pub[2:]
    out_dyn = [mx.nd.zeros(SHAPE)] + dyn[2:]
    getattr(mx.nd, name)(*pub, out=out_pub, **attrs)
    static = dict(attrs)
    full = dict(dict(wd=0.0, rescale_grad=1.0), **static)
    if "bc1" in keys:
        t = static.pop("t")
        full["bc1"] = 1 - static.get("beta1", 0.9) ** t
        full["bc2"] = 1 - static.get("beta2", 0.999) ** t
    hp = mx.nd.array([full[k] for k in keys], dtype="float64")
    for k in keys:
        static.pop(k, None)
    getattr(mx.nd, hp_name)(*dyn, hp, out=out_dyn, **static)
    for a, b in zip(out_pub, out_dyn):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=2e-7, atol=1e-7)


def test_hp_form_checks_vector():
    w = mx.nd.ones((2,))
    with pytest.raises(MXNetError, match="hyper-parameter"):
        mx.nd._sgd_update_hp(w, w, mx.nd.array([0.1, 0.0], dtype="float64"), out=w)
    with pytest.raises(MXNetError, match="hyper-parameter"):
        mx.nd._sgd_update_hp(w, w, mx.nd.array([0.1, 0.0, 1.0]), out=w)  # float32, not float64


# ---- AdamW (contrib adamw_update): rescale_grad is a (1,) array; non-finite skips the step ----
ADAMW = dict(lr=0.1, eta=0.5, wd=0.1, clip_gradient=0.8, beta1=0.8, beta2=0.9, epsilon=1e-3)


@pytest.mark.parametrize("rescale", [2.0, 0.5])
def test_adamw_forward_matches_reference(rescale):
    arrs = _inputs(2, True, seed=4) + [np.array([rescale], np.float32)]
    check_forward("_adamw_update", arrs, ADAMW, rtol=1e-5, atol=1e-6)


def test_adamw_hand_values_and_in_place_states():
    """Values checked against MXNet 1.9.1's mx.nd.contrib.adamw_update on the same inputs."""
    w, g = mx.nd.array([1.0, 2.0]), mx.nd.array([0.5, -1.0])
    m, v = mx.nd.array([0.1, 0.2]), mx.nd.array([0.3, 0.1])
    res = mx.nd.contrib.adamw_update(w, g, m, v, 2.0, lr=0.1, eta=0.5, wd=0.1, clip_gradient=0.8, out=w)
    assert res is w
    np.testing.assert_allclose(w.asnumpy(), [0.93448997, 1.88423109], rtol=1e-6)
    np.testing.assert_allclose(m.asnumpy(), [0.17, 0.1], rtol=1e-6)
    np.testing.assert_allclose(v.asnumpy(), [0.30034003, 0.10053999], rtol=1e-6)


@pytest.mark.parametrize("bad", [np.inf, np.nan, -np.inf])
def test_adamw_non_finite_rescale_skips_the_step(bad):
    w, g = mx.nd.array([1.0, 2.0]), mx.nd.array([0.5, -1.0])
    m, v = mx.nd.array([0.1, 0.2]), mx.nd.array([0.3, 0.1])
    new = mx.nd.contrib.adamw_update(w, g, m, v, bad, lr=0.1, eta=0.5, wd=0.1)
    assert new is not w
    for arr, want in ((new, [1.0, 2.0]), (m, [0.1, 0.2]), (v, [0.3, 0.1])):
        np.testing.assert_array_equal(arr.asnumpy(), np.float32(want))


def test_mp_adamw_matches_float32_rule():
    """MXNet 1.9.1 gives weight32 [0.93267566, 1.9031024], mean [0.19, -0.02] for these inputs."""
    w16, w32 = mx.nd.array([1.0, 2.0], dtype="float16"), mx.nd.array([1.0, 2.0])
    g16 = mx.nd.array([0.5, -1.0], dtype="float16")
    m, v = mx.nd.array([0.1, 0.2]), mx.nd.array([0.3, 0.1])
    mx.nd.contrib.mp_adamw_update(w16, g16, m, v, w32, 2.0, lr=0.1, eta=0.5, wd=0.1, out=w16)
    np.testing.assert_allclose(w32.asnumpy(), [0.93267566, 1.9031024], rtol=1e-6)
    np.testing.assert_allclose(m.asnumpy(), [0.19, -0.02], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(w16.asnumpy(), w32.asnumpy().astype(np.float16))


def test_adamw_symbol_takes_number_or_symbol_rescale():
    names = ["w", "g", "m", "v"]
    syms = [mx.sym.Variable(n) for n in names]
    s = mx.sym.contrib.adamw_update(*syms, rescale_grad=2.0, lr=0.1, eta=0.5, name="upd")
    assert s.list_outputs() == ["upd_weight", "upd_mean", "upd_var"]
    assert s.list_arguments() == names
    s2 = mx.sym.contrib.adamw_update(*syms, rescale_grad=mx.sym.Variable("r"), lr=0.1, eta=0.5)
    assert s2.list_arguments() == names + ["r"]
    with pytest.raises(MXNetError, match="one value"):
        mx.nd.contrib.adamw_update(*[mx.nd.ones((2,))] * 4, mx.nd.ones((2,)), lr=0.1, eta=0.5)
