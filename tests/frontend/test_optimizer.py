"""mx.optimizer and mx.lr_scheduler: several steps of each optimiser against a numpy
re-implementation of MXNet 1.9's formula; schedulers; multipliers; states save/load."""
from __future__ import annotations

import math

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError

SHAPE = (3, 4)
STEPS = 4


def _data(seed=0):
    rs = np.random.RandomState(seed)
    return rs.uniform(-1, 1, SHAPE), [rs.uniform(-1, 1, SHAPE) for _ in range(STEPS)]


def _clip(x, c):
    return x if c is None else np.clip(x, -c, c)


# ---- numpy re-implementations (float64), one step at a time: fn(w, g, state, t, kw) -> w ----
def np_sgd(w, g, s, t, kw):
    g = _clip(kw.get("rescale_grad", 1) * g, kw.get("clip_gradient"))
    lr, wd, mom = kw["learning_rate"], kw.get("wd", 0), kw.get("momentum", 0)
    if mom == 0:
        return (1 - lr * wd) * w - lr * g
    s["m"] = mom * s.get("m", 0) - lr * wd * w - lr * g
    return w + s["m"]


def np_nag(w, g, s, t, kw):
    g = _clip(kw.get("rescale_grad", 1) * g, kw.get("clip_gradient"))
    lr, wd, mom = kw["learning_rate"], kw.get("wd", 0), kw["momentum"]
    m1 = mom * s.get("m", 0)
    w2 = w - m1 + (mom + 1) * (m1 - lr * (g + wd * w))
    s["m"] = m1 - lr * (g + wd * w2)
    return w2


def np_adam(w, g, s, t, kw):
    b1, b2, eps, lr, wd = kw.get("beta1", 0.9), kw.get("beta2", 0.999), kw.get("epsilon", 1e-8), \
        kw.get("learning_rate", 0.001), kw.get("wd", 0)
    lr = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    g = _clip(kw.get("rescale_grad", 1) * g + wd * w, kw.get("clip_gradient"))
    s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
    return w - lr * s["m"] / (np.sqrt(s["v"]) + eps)


def np_adamw(w, g, s, t, kw):
    """MXNet 2.0's AdamW: decoupled decay, both terms scaled by the bias-corrected lr."""
    b1, b2, eps, lr, wd = kw.get("beta1", 0.9), kw.get("beta2", 0.999), kw.get("epsilon", 1e-6), \
        kw.get("learning_rate", 0.001), kw.get("wd", 0)
    if kw.get("correct_bias", True):
        lr = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    g = _clip(kw.get("rescale_grad", 1) * g, kw.get("clip_gradient"))
    s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
    return w - lr * (s["m"] / (np.sqrt(s["v"]) + eps) + wd * w)


def np_rmsprop(w, g, s, t, kw):
    g1, g2, eps, lr, wd = kw.get("gamma1", 0.9), kw.get("gamma2", 0.9), kw.get("epsilon", 1e-8), \
        kw.get("learning_rate", 0.001), kw.get("wd", 0)
    g = _clip(kw.get("rescale_grad", 1) * g + wd * w, kw.get("clip_gradient"))
    s["n"] = (1 - g1) * g * g + g1 * s.get("n", 0)
    if not kw.get("centered"):
        w = w - lr * g / np.sqrt(s["n"] + eps)
    else:
        s["g"] = (1 - g1) * g + g1 * s.get("g", 0)
        s["d"] = g2 * s.get("d", 0) - lr * g / np.sqrt(s["n"] - s["g"] ** 2 + eps)
        w = w + s["d"]
    return _clip(w, kw.get("clip_weights"))


def np_adagrad(w, g, s, t, kw):
    lr, wd, eps = kw["learning_rate"], kw.get("wd", 0), kw.get("eps", 1e-7)
    g = _clip(kw.get("rescale_grad", 1) * g, kw.get("clip_gradient"))
    s["h"] = s.get("h", 0) + g * g
    return w - lr * (g / np.sqrt(s["h"] + eps) + wd * w)


def np_adadelta(w, g, s, t, kw):
    rho, eps, wd = kw.get("rho", 0.9), kw.get("epsilon", 1e-5), kw.get("wd", 0)
    g = _clip(kw.get("rescale_grad", 1) * g, kw.get("clip_gradient"))
    s["ag"] = rho * s.get("ag", 0) + (1 - rho) * g * g
    d = np.sqrt(s.get("ad", 0) + eps) / np.sqrt(s["ag"] + eps) * g
    s["ad"] = rho * s.get("ad", 0) + (1 - rho) * d * d
    return w - (d + wd * w)


def np_adamax(w, g, s, t, kw):
    b1, b2, lr, wd = kw.get("beta1", 0.9), kw.get("beta2", 0.999), kw.get("learning_rate", 0.002), kw.get("wd", 0)
    lr = lr / (1 - b1 ** t)
    g = _clip(kw.get("rescale_grad", 1) * g + wd * w, kw.get("clip_gradient"))
    s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
    s["u"] = np.maximum(b2 * s.get("u", 0), np.abs(g))
    return w - lr * s["m"] / s["u"]


def np_nadam(w, g, s, t, kw):
    b1, b2, eps, lr, wd, sd = 0.9, 0.999, 1e-8, kw.get("learning_rate", 0.001), kw.get("wd", 0), 0.004
    g = _clip(kw.get("rescale_grad", 1) * g + wd * w, kw.get("clip_gradient"))
    mt = b1 * (1 - 0.5 * 0.96 ** (t * sd))
    mt1 = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * sd))
    s["sched"] = s.get("sched", 1.0) * mt
    nxt = s["sched"] * mt1
    s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
    mbar = (1 - mt) * g / (1 - s["sched"]) + mt1 * s["m"] / (1 - nxt)
    return w - lr * mbar / (np.sqrt(s["v"] / (1 - b2 ** t)) + eps)


def np_ftrl(w, g, s, t, kw):
    lr, l1, beta, wd = kw.get("learning_rate", 0.1), kw.get("lamda1", 0.01), kw.get("beta", 1), kw.get("wd", 0)
    g = _clip(kw.get("rescale_grad", 1) * g, kw.get("clip_gradient"))
    n = s.get("n", 0)
    s["z"] = s.get("z", 0) + g - (np.sqrt(n + g * g) - np.sqrt(n)) * w / lr
    s["n"] = n + g * g
    z = s["z"]
    return (np.sign(z) * l1 - z) / ((beta + np.sqrt(s["n"])) / lr + wd) * (np.abs(z) > l1)


def np_signum(w, g, s, t, kw):
    lr, wd, mom, wd_lh = kw.get("learning_rate", 0.01), kw.get("wd", 0), kw.get("momentum", 0.9), kw.get("wd_lh", 0)
    g = _clip(kw.get("rescale_grad", 1) * g, kw.get("clip_gradient"))
    if mom == 0:
        return (1 - lr * wd) * w - lr * np.sign(g)
    s["m"] = mom * s.get("m", 0) - (1 - mom) * (wd * w + g)
    return (1 - lr * wd_lh) * w + lr * np.sign(s["m"])


def np_lamb(w, g, s, t, kw):
    b1, b2, eps, lr, wd = 0.9, 0.999, 1e-6, kw.get("learning_rate", 0.001), kw.get("wd", 0)
    g = _clip(kw.get("rescale_grad", 1) * g, kw.get("clip_gradient"))
    s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
    d = (s["m"] / (1 - b1 ** t)) / (np.sqrt(s["v"] / (1 - b2 ** t)) + eps) + wd * w
    r1, r2 = np.linalg.norm(w), np.linalg.norm(d)
    if kw.get("lower_bound"):
        r1 = max(r1, kw["lower_bound"])
    if kw.get("upper_bound"):
        r1 = min(r1, kw["upper_bound"])
    ratio = 1.0 if r1 == 0 or r2 == 0 else r1 / r2
    return w - lr * ratio * d


def np_ftml(w, g, s, t, kw):
    b1, b2, eps, lr, wd = kw.get("beta1", 0.6), kw.get("beta2", 0.999), kw.get("epsilon", 1e-8), \
        kw["learning_rate"], kw.get("wd", 0)
    g = _clip(kw.get("rescale_grad", 1) * g + wd * w, kw.get("clip_gradient"))
    s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
    d = (1 - b1 ** t) / lr * (np.sqrt(s["v"] / (1 - b2 ** t)) + eps)
    s["z"] = b1 * s.get("z", 0) + (1 - b1) * g - (d - b1 * s.get("d", 0)) * w
    s["d"] = d
    return -s["z"] / d


def np_dcasgd(w, g, s, t, kw):
    lr, wd, lam, mom = kw["learning_rate"], kw.get("wd", 0), kw.get("lamda", 0.04), kw.get("momentum", 0)
    g = _clip(kw.get("rescale_grad", 1) * g, kw.get("clip_gradient"))
    prev = s.get("prev", w)
    step = -lr * (g + wd * w + lam * g * g * (w - prev))
    s["m"] = mom * s.get("m", 0) + step if mom else step
    s["prev"] = w
    return w + s["m"]


CASES = [
    ("sgd", np_sgd, dict(learning_rate=0.1)),
    ("sgd", np_sgd, dict(learning_rate=0.1, momentum=0.9, wd=0.01, rescale_grad=0.5, clip_gradient=0.3)),
    ("nag", np_nag, dict(learning_rate=0.1, momentum=0.9, wd=0.01)),
    ("adam", np_adam, dict(learning_rate=0.01, wd=0.01, clip_gradient=0.4)),
    ("adamw", np_adamw, dict(learning_rate=0.01, wd=0.1, clip_gradient=0.4, rescale_grad=2.0)),
    ("adamw", np_adamw, dict(learning_rate=0.01, wd=0.01, correct_bias=False, beta1=0.8)),
    ("rmsprop", np_rmsprop, dict(learning_rate=0.01, wd=0.01)),
    ("rmsprop", np_rmsprop, dict(learning_rate=0.01, centered=True, clip_weights=0.9)),
    ("adagrad", np_adagrad, dict(learning_rate=0.1, wd=0.01, clip_gradient=0.5)),
    ("adadelta", np_adadelta, dict(wd=0.01, rescale_grad=0.7)),
    ("adamax", np_adamax, dict(wd=0.01, clip_gradient=0.5)),
    ("nadam", np_nadam, dict(wd=0.01)),
    ("ftrl", np_ftrl, dict(wd=0.01, lamda1=0.001)),
    ("signum", np_signum, dict(learning_rate=0.01, wd=0.01, wd_lh=0.01)),
    ("signum", np_signum, dict(learning_rate=0.01, momentum=0.0)),
    ("lamb", np_lamb, dict(learning_rate=0.01, wd=0.01)),
    ("lamb", np_lamb, dict(learning_rate=0.01, wd=0.01, lower_bound=0.1, upper_bound=0.5)),
    ("ftml", np_ftml, dict(learning_rate=0.01, wd=0.01, clip_gradient=0.4)),
    ("dcasgd", np_dcasgd, dict(learning_rate=0.1, wd=0.01, lamda=0.5)),
    ("dcasgd", np_dcasgd, dict(learning_rate=0.1, momentum=0.9, lamda=0.5)),
    ("ccsgd", np_sgd, dict(learning_rate=0.1, momentum=0.9)),
]


def test_sgld_mean_and_noise():
    """SGLD: half a gradient step plus N(0, lr) noise drawn with mx.random (seeded)."""
    mx.random.seed(3)
    w = mx.nd.zeros((200, 200))
    mx.optimizer.get_updater(mx.optimizer.SGLD(learning_rate=0.04))(0, mx.nd.ones((200, 200)), w)
    a = w.asnumpy()
    assert abs(a.mean() + 0.02) < 0.002 and abs(a.std() - 0.2) < 0.005
    mx.random.seed(3)
    w2 = mx.nd.zeros((200, 200))
    mx.optimizer.get_updater(mx.optimizer.SGLD(learning_rate=0.04))(0, mx.nd.ones((200, 200)), w2)
    np.testing.assert_array_equal(a, w2.asnumpy())


def test_test_optimizer():
    upd = mx.optimizer.get_updater(mx.optimizer.create("test", rescale_grad=0.5))
    w = mx.nd.ones((2,))
    upd(0, mx.nd.ones((2,)), w)
    np.testing.assert_allclose(w.asnumpy(), [1.5, 1.5])
    np.testing.assert_allclose(upd.states[0].asnumpy(), [1.5, 1.5])


@pytest.mark.parametrize("name,ref,kw", CASES, ids=["%s%d" % (c[0], i) for i, c in enumerate(CASES)])
def test_optimizer_steps_match_formula(name, ref, kw):
    w0, grads = _data()
    upd = mx.optimizer.get_updater(mx.optimizer.create(name, **kw))
    w = mx.nd.array(w0)
    want, state = w0.copy(), {}
    for t, g in enumerate(grads, 1):
        upd(0, mx.nd.array(g), w)
        want = ref(want, g, state, t, kw)
    np.testing.assert_allclose(w.asnumpy(), want, rtol=1e-4, atol=1e-5)


def test_registry_and_errors():
    assert isinstance(mx.optimizer.create("SGD"), mx.optimizer.SGD)
    assert set(mx.optimizer.Optimizer.opt_registry) >= {"sgd", "nag", "adam", "rmsprop", "adagrad", "adadelta",
                                                      "adamax", "nadam", "ftrl", "signum", "lamb", "ftml",
                                                      "dcasgd", "sgld", "ccsgd", "test"}
    with pytest.raises(ValueError, match="Cannot find optimizer nosuch"):
        mx.optimizer.create("nosuch")

    @mx.optimizer.register
    class MyOpt(mx.optimizer.Optimizer):
        def update(self, index, weight, grad, state):
            weight -= grad
    w = mx.nd.ones((2,))
    mx.optimizer.get_updater(mx.optimizer.create("myopt"))(0, mx.nd.ones((2,)), w)
    assert (w.asnumpy() == 0).all()
    with pytest.raises(MXNetError, match="SGD.update"):
        mx.optimizer.SGD().update(0, np.ones(2), mx.nd.ones((2,)), None)


def test_lr_and_wd_multipliers():
    opt = mx.optimizer.SGD(learning_rate=0.1, wd=0.1, param_idx2name={0: "fc_weight", 1: "fc_bias"})
    assert opt.wd_mult == {"fc_bias": 0.0}
    opt.set_lr_mult({"fc_weight": 2.0})
    assert opt._get_lr(0) == pytest.approx(0.2) and opt._get_lr(1) == pytest.approx(0.1)
    assert opt._get_wd(0) == pytest.approx(0.1) and opt._get_wd(1) == 0.0

    class P:
        lr_mult, wd_mult = 3.0, 0.5
    opt = mx.optimizer.SGD(learning_rate=0.1, wd=0.2, param_dict={0: P()})
    assert opt._get_lr(0) == pytest.approx(0.3) and opt._get_wd(0) == pytest.approx(0.1)


def test_learning_rate_and_num_update():
    opt = mx.optimizer.SGD(learning_rate=0.5, begin_num_update=10)
    assert opt.learning_rate == 0.5 and opt.num_update == 10
    opt.set_learning_rate(0.25)
    assert opt.learning_rate == 0.25
    upd = mx.optimizer.get_updater(opt)
    w = mx.nd.ones((2,))
    upd(0, mx.nd.ones((2,)), w)
    upd(0, mx.nd.ones((2,)), w)
    upd(1, mx.nd.ones((2,)), mx.nd.ones((2,)))
    assert opt.num_update == 12 and opt._index_update_count == {0: 12, 1: 11}
    sched = mx.optimizer.SGD(lr_scheduler=mx.lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=1.0))
    with pytest.raises(UserWarning):
        sched.set_learning_rate(0.1)
    assert sched.learning_rate == 1.0


def test_scheduler_drives_updates():
    opt = mx.optimizer.SGD(learning_rate=1.0, lr_scheduler=mx.lr_scheduler.MultiFactorScheduler([1, 2], 0.5))
    upd = mx.optimizer.get_updater(opt)
    w = mx.nd.zeros((1,))
    for _ in range(3):  # lrs 1, 0.5, 0.25 (the count passes step k after update k)
        upd(0, mx.nd.ones((1,)), w)
    np.testing.assert_allclose(w.asnumpy(), [-1.75])


def test_multi_precision_sgd():
    w0, grads = _data(3)
    opt = mx.optimizer.SGD(learning_rate=0.1, momentum=0.9, multi_precision=True)
    upd = mx.optimizer.get_updater(opt)
    w = mx.nd.array(w0, dtype="float16")
    want, state = w0.astype(np.float16).astype(np.float64), {}
    for t, g in enumerate(grads, 1):
        g16 = g.astype(np.float16)
        upd(0, mx.nd.array(g16, dtype="float16"), w)
        want = np_sgd(want, g16.astype(np.float64), state, t, dict(learning_rate=0.1, momentum=0.9))
    mom, master = upd.states[0]
    assert master.dtype == np.float32 and mom.dtype == np.float32 and w.dtype == np.float16
    np.testing.assert_allclose(master.asnumpy(), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(w.asnumpy(), master.asnumpy().astype(np.float16))


def test_multi_precision_generic_base():
    """Optimisers without an mp kernel (Adam) keep (float32 master, state) and cast back."""
    opt = mx.optimizer.Adam(learning_rate=0.1, multi_precision=True)
    upd = mx.optimizer.get_updater(opt)
    w = mx.nd.array(np.ones(4), dtype="float16")
    upd(0, mx.nd.array(np.full(4, 0.5), dtype="float16"), w)
    master, (mean, var) = upd.states[0]
    assert master.dtype == np.float32
    np.testing.assert_allclose(master.asnumpy(), 1 - 0.1, rtol=1e-5)
    np.testing.assert_array_equal(w.asnumpy(), master.asnumpy().astype(np.float16))


# ---- states ----
def test_states_round_trip_continue_identically():
    w0, grads = _data(4)
    opt = mx.optimizer.Adam(learning_rate=0.05, wd=0.01)
    upd = mx.optimizer.get_updater(opt)
    w = mx.nd.array(w0)
    for g in grads[:2]:
        upd("w", mx.nd.array(g), w)
    blob = upd.get_states(dump_optimizer=True)
    assert isinstance(blob, bytes) and b"pickle" not in blob[:16]
    upd2 = mx.optimizer.get_updater(mx.optimizer.SGD())
    upd2.set_states(blob)
    assert isinstance(upd2.optimizer, mx.optimizer.Adam) and upd2.optimizer.lr == 0.05
    assert upd2.optimizer._index_update_count == {"w": 2}
    w2 = w.copy()
    for g in grads[2:]:
        upd("w", mx.nd.array(g), w)
        upd2("w", mx.nd.array(g), w2)
    np.testing.assert_array_equal(w.asnumpy(), w2.asnumpy())


def test_states_without_optimizer_and_none_states():
    opt = mx.optimizer.SGD(learning_rate=0.1)  # no momentum: state None
    upd = mx.optimizer.get_updater(opt)
    upd(0, mx.nd.ones((2,)), mx.nd.ones((2,)))
    upd2 = mx.optimizer.get_updater(opt)
    upd2.set_states(upd.get_states())
    assert upd2.states == {0: None} and upd2.optimizer is opt


def test_states_keep_scheduler_and_tuples():
    sched = mx.lr_scheduler.CosineScheduler(max_update=10, base_lr=0.3, warmup_steps=2)
    opt = mx.optimizer.RMSProp(centered=True, lr_scheduler=sched, learning_rate=0.3,
                               param_idx2name={0: "a_weight"})
    upd = mx.optimizer.get_updater(opt)
    upd(0, mx.nd.ones((2,)), mx.nd.ones((2,)))
    upd2 = mx.optimizer.get_updater(mx.optimizer.SGD())
    upd2.set_states(upd.get_states(True))
    o2 = upd2.optimizer
    assert isinstance(o2.lr_scheduler, mx.lr_scheduler.CosineScheduler)
    assert o2.learning_rate == opt.learning_rate and o2.idx2name == {0: "a_weight"}
    assert isinstance(upd2.states[0], tuple) and len(upd2.states[0]) == 3


def test_set_states_refuses_pickle_and_garbage():
    import pickle
    upd = mx.optimizer.get_updater(mx.optimizer.SGD())
    with pytest.raises(MXNetError, match="pickle"):
        upd.set_states(pickle.dumps({0: None}))
    with pytest.raises(MXNetError, match="exceeds"):
        upd.set_states(b"KILNUPD1" + b"\xff" * 8 + b"{}")
    with pytest.raises(MXNetError, match="corrupt header"):
        upd.set_states(b"KILNUPD1" + (3).to_bytes(8, "little") + b"{{{")


# ---- learning-rate schedulers ----
def test_factor_scheduler():
    s = mx.lr_scheduler.FactorScheduler(step=3, factor=0.5, stop_factor_lr=0.02, base_lr=0.1, warmup_steps=2,
                                        warmup_begin_lr=0.05)
    got = [s(i) for i in range(14)]
    want = [0.05, 0.075] + [0.1 * 0.5 ** ((i - 1) // 3) if 0.1 * 0.5 ** ((i - 1) // 3) >= 0.02 else 0.02
                            for i in range(2, 14)]
    want[2] = 0.1
    np.testing.assert_allclose(got, want)


def test_multifactor_scheduler():
    s = mx.lr_scheduler.MultiFactorScheduler(step=[2, 5, 7], factor=0.3, base_lr=1.0)
    got = [s(i) for i in range(10)]
    np.testing.assert_allclose(got, [1, 1, 1, .3, .3, .3, .09, .09, .027, .027])
    with pytest.raises(ValueError, match="increasing"):
        mx.lr_scheduler.MultiFactorScheduler(step=[3, 2])


def test_poly_and_cosine_schedulers():
    p = mx.lr_scheduler.PolyScheduler(max_update=10, base_lr=1.0, pwr=2, final_lr=0.1, warmup_steps=3,
                                      warmup_mode="constant", warmup_begin_lr=0.2)
    want = [0.2] * 3 + [0.1 + 0.9 * (1 - (i - 3) / 7) ** 2 for i in range(3, 11)] + [0.1] * 3
    np.testing.assert_allclose([p(i) for i in range(14)], want)
    c = mx.lr_scheduler.CosineScheduler(max_update=10, base_lr=1.0, final_lr=0.1, warmup_steps=3)
    want = [1.0 * i / 3 for i in range(3)] + [0.1 + 0.9 * (1 + math.cos(math.pi * (i - 3) / 7)) / 2
                                              for i in range(3, 11)] + [0.1] * 3
    np.testing.assert_allclose([c(i) for i in range(14)], want)
    with pytest.raises(ValueError, match="warmup"):
        mx.lr_scheduler.CosineScheduler(10, warmup_mode="exp")
    with pytest.raises(ValueError, match="Base lr"):
        mx.lr_scheduler.PolyScheduler(10, base_lr=0.1, warmup_begin_lr=0.5)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "adamax", "nadam", "adagrad", "lamb", "rmsprop"])
def test_schedules_do_not_compile_per_step(name):
    """Changing learning rates (schedules, Adam's bias correction) reach the kernels at run time:
    after the first steps no new imperative program is built."""
    from kiln import imperative
    sched = mx.lr_scheduler.CosineScheduler(max_update=50, base_lr=0.1)
    opt = mx.optimizer.create(name, lr_scheduler=sched, learning_rate=0.1, momentum=0.9) if name == "sgd" \
        else mx.optimizer.create(name, lr_scheduler=sched, learning_rate=0.1)
    upd = mx.optimizer.get_updater(opt)
    w, g = mx.nd.ones((7, 3)), mx.nd.full((7, 3), 0.25)
    for _ in range(2):
        upd(0, g, w)
    before = (len(imperative._generic), len(imperative._static))
    for _ in range(4):
        upd(0, g, w)
    w.wait_to_read()
    assert (len(imperative._generic), len(imperative._static)) == before


@pytest.mark.parametrize("name", ["rmsprop", "adagrad", "adadelta", "ftrl", "adam", "adamw", "sgd"])
def test_float64_weights(name):
    """States follow the weight's dtype, so float64 training works (and matches the formula)."""
    ref = {c[0]: c[1] for c in CASES}[name]
    kw = dict(learning_rate=0.05, momentum=0.9) if name == "sgd" else dict(learning_rate=0.05)
    w0, grads = _data(5)
    upd = mx.optimizer.get_updater(mx.optimizer.create(name, **kw))
    w = mx.nd.array(w0, dtype="float64")
    want, state = w0.copy(), {}
    for t, g in enumerate(grads, 1):
        upd(0, mx.nd.array(g, dtype="float64"), w)
        want = ref(want, g, state, t, kw)
    assert w.dtype == np.float64
    np.testing.assert_allclose(w.asnumpy(), want, rtol=1e-10, atol=1e-12)
