"""BatchNorm in training mode (batch statistics, moving-average update, full backward),
checked against numbers produced by MXNet 1.9.1's CPU operator, numpy formulas and finite
differences. The MXNet values below came from ``mx.sym.BatchNorm(..., output_mean_var=True,
eps=1e-3, momentum=0.9)`` bound with the inputs of ``_inputs``: ``forward(is_train=True)`` +
``backward([head, 0, 0])``, then a second training step on ``x * 0.5 + 0.3`` (mm2/mv2), then
``forward(is_train=False)`` (infer_*). MXNet's CPU kernel applies the moving-average update
during backward; kiln applies it in the training forward, so after each forward+backward
step the auxiliary states agree.
"""
import numpy as np
import pytest

import kiln as mx
from kiln import autograd
from kiln.base import MXNetError
from kiln.test_utils import assert_almost_equal, check_numeric_gradient

EPS, MOM = 1e-3, 0.9

MXNET = {
    ((4, 3), 1, False): dict(
        out=[-0.12025384, 1.0246534, 0.66016108, -0.60647666, -1.7131951, -0.016377857, 0.5856759, 0.069363184, -2.3653712, -0.65894538, 0.21917847, 1.721588],
        mean=[-0.22560319, 0.40968445, 0.44478342],
        invstd=[0.70695955, 0.7411558, 0.75075561],
        gx=[0.28045055, -0.12723494, 0.2648598, -0.34757668, -0.046897236, -1.1032673, -0.10681017, -0.086382069, 0.4005979, 0.17393634, 0.26051426, 0.43780965],
        gg=[-1.1182245, 2.6523888, -0.96194124],
        gb=[1.0047517, 0.76303446, 0.16245022],
        mm2=[0.24141556, 0.16835584, 0.011269715],
        mv2=[1.0399809, 1.2217377, 1.418918],
        infer_out=[-0.17129014, 0.89043885, 1.0123736, -0.50833631, -0.77989483, 0.63425106, 0.31805521, 0.30762601, -0.67861873, -0.54470724, 0.39902678, 1.605613],
        infer_var=[0.98011851, 0.90434331, 0.83920556],
    ),
    ((2, 3, 2, 2), 1, False): dict(
        out=[-0.19713171, 0.55568439, 0.20562313, -0.73447484, -1.3682747, 0.19484782, 1.3095527, 0.34279492, -1.6274878, -1.4997507, 0.79365492, 1.8928846, -0.11294512, -0.92304474, -0.66968012, 0.27596909, 1.2103107, -0.2658138, -1.5154854, -0.70793229, 1.4579041, 1.5835587, -0.64217371, -1.9585899],
        mean=[-0.0073424727, 0.015797265, 0.022145078],
        invstd=[0.78128761, 0.71143204, 0.64667612],
        gx=[0.46011487, 0.10794175, -0.0033976631, 0.058059629, -0.87930733, -0.67779541, -0.21957889, 0.13980533, 0.69425976, 0.91249305, 0.68587047, 0.10908118, -0.16249603, -0.049742889, -0.13059551, -0.27988419, 0.26109901, 0.48948756, 0.48345813, 0.40283144, 0.090675242, -0.55889106, -0.97729015, -0.95619851],
        gg=[3.5406365, -1.4201453, -0.064506434],
        gb=[-1.4430101, 0.54883152, 0.4087677],
        mm2=[0.27197209, 0.11321162, -0.047899675],
        mv2=[0.99828285, 1.2395968, 1.4898795],
        infer_out=[-0.18598102, 0.29597092, 0.071862146, -0.52998745, -0.7254743, 0.26083755, 0.96420312, 0.35419038, -0.58958298, -0.50869602, 0.94355869, 1.6396247, -0.13208486, -0.65070975, -0.4885059, 0.11689757, 0.9015826, -0.029834494, -0.81836247, -0.30880603, 1.3641815, 1.4437499, 0.0343481, -0.79924685],
        infer_var=[1.0003588, 0.8978104, 0.81899023],
    ),
    ((2, 2, 3), -1, True): dict(
        out=[-0.040507674, 1.0246534, 0.44010743, -1.0129533, -1.7131951, -0.010918573, 1.3713517, 0.069363184, -1.5769143, -1.1178908, 0.21917847, 1.1477255],
        mean=[-0.22560319, 0.40968445, 0.44478342],
        invstd=[0.70695955, 0.7411558, 0.75075561],
        gx=[0.56090111, -0.12723494, 0.17657319, -0.69515336, -0.046897236, -0.73551148, -0.21362035, -0.086382069, 0.26706526, 0.34787267, 0.26051426, 0.29187307],
        gg=[0, 0, 0],
        gb=[1.0047517, 0.76303446, 0.16245022],
        mm2=[0.24141556, 0.16835584, 0.011269715],
        mv2=[1.0399809, 1.2217377, 1.418918],
        infer_out=[-0.1425803, 0.89043885, 0.67491573, -0.81667262, -0.77989483, 0.42283401, 0.83611041, 0.30762601, -0.45241246, -0.88941449, 0.39902678, 1.0704087],
        infer_var=[0.98011851, 0.90434331, 0.83920556],
    ),
}


def _inputs(shape, axis, dtype=np.float32):
    n, c = int(np.prod(shape)), shape[axis]
    x = (2 * np.sin(np.arange(n) * 1.3)).reshape(shape).astype(dtype)
    head = np.cos(np.arange(n) * 0.7).reshape(shape).astype(dtype)
    gamma, beta = (0.5 + 0.5 * np.arange(c)).astype(dtype), (0.1 * np.arange(c) - 0.2).astype(dtype)
    mm, mv = (0.3 - 0.2 * np.arange(c)).astype(dtype), (1.0 + 0.25 * np.arange(c)).astype(dtype)
    return x, head, gamma, beta, mm, mv


def _sym(**kw):
    v = mx.sym.Variable
    return mx.sym.BatchNorm(v("x"), v("g"), v("b"), v("mm"), v("mv"), name="bn", eps=EPS, momentum=MOM, **kw)


def _bind(sym, x, gamma, beta, mm, mv, grad_req="write"):
    c = gamma.shape
    return sym.bind(mx.cpu(), {"x": mx.nd.array(x, dtype=x.dtype), "g": mx.nd.array(gamma, dtype=x.dtype),
                               "b": mx.nd.array(beta, dtype=x.dtype)},
                    args_grad={"x": mx.nd.zeros(x.shape, dtype=x.dtype), "g": mx.nd.zeros(c, dtype=x.dtype),
                               "b": mx.nd.zeros(c, dtype=x.dtype)}, grad_req=grad_req,
                    aux_states={"mm": mx.nd.array(mm, dtype=x.dtype), "mv": mx.nd.array(mv, dtype=x.dtype)})


def _np_train(x, head, gamma, beta, axis, fix_gamma):
    """Batch-statistics BatchNorm and its backward in float64 (the textbook formulas)."""
    x, head = x.astype(np.float64), head.astype(np.float64)
    axis = axis % x.ndim
    red = tuple(a for a in range(x.ndim) if a != axis)
    shape = [1] * x.ndim
    shape[axis] = -1
    g = np.ones_like(gamma, dtype=np.float64) if fix_gamma else gamma.astype(np.float64)
    mean, var = x.mean(axis=red), x.var(axis=red)
    invstd = 1 / np.sqrt(var + EPS)
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    y = xhat * g.reshape(shape) + beta.reshape(shape)
    n = x.size // x.shape[axis]
    dxhat = head * g.reshape(shape)
    gx = invstd.reshape(shape) / n * (n * dxhat - dxhat.sum(axis=red, keepdims=True)
                                      - xhat * (dxhat * xhat).sum(axis=red, keepdims=True))
    gg = np.zeros_like(g) if fix_gamma else (head * xhat).sum(axis=red)
    return dict(out=y, mean=mean, var=var, invstd=invstd, gx=gx, gg=gg, gb=head.sum(axis=red))


@pytest.mark.parametrize("case", sorted(MXNET, key=str), ids=str)
def test_training_step_matches_mxnet(case):
    shape, axis, fix_gamma = case
    want = MXNET[case]
    x, head, gamma, beta, mm, mv = _inputs(shape, axis)
    ex = _bind(_sym(axis=axis, fix_gamma=fix_gamma, output_mean_var=True), x, gamma, beta, mm, mv)
    out, mean, invstd = [o.asnumpy() for o in ex.forward(is_train=True)]
    tol = dict(rtol=1e-5, atol=1e-6)
    assert_almost_equal(out.ravel(), np.array(want["out"], np.float32), **tol)
    assert_almost_equal(mean, np.array(want["mean"], np.float32), **tol)
    assert_almost_equal(invstd, np.array(want["invstd"], np.float32), **tol)  # 1/sqrt(var+eps), as MXNet
    ref = _np_train(x, head, gamma, beta, axis, fix_gamma)
    # moving = moving * momentum + batch * (1 - momentum), biased batch variance
    assert_almost_equal(ex.aux_dict["mm"].asnumpy(), mm * MOM + ref["mean"] * (1 - MOM), **tol)
    assert_almost_equal(ex.aux_dict["mv"].asnumpy(), mv * MOM + ref["var"] * (1 - MOM), **tol)
    c = shape[axis]
    ex.backward([mx.nd.array(head), mx.nd.zeros(c), mx.nd.zeros(c)])
    assert_almost_equal(ex.grad_dict["x"].asnumpy().ravel(), np.array(want["gx"], np.float32), rtol=1e-4, atol=1e-5)
    assert_almost_equal(ex.grad_dict["g"].asnumpy(), np.array(want["gg"], np.float32), rtol=1e-4, atol=1e-5)
    assert_almost_equal(ex.grad_dict["b"].asnumpy(), np.array(want["gb"], np.float32), rtol=1e-5, atol=1e-6)
    ex.arg_dict["x"][:] = x * 0.5 + 0.3  # second step: the update compounds
    ex.forward(is_train=True)
    ex.backward([mx.nd.array(head), mx.nd.zeros(c), mx.nd.zeros(c)])
    assert_almost_equal(ex.aux_dict["mm"].asnumpy(), np.array(want["mm2"], np.float32), **tol)
    assert_almost_equal(ex.aux_dict["mv"].asnumpy(), np.array(want["mv2"], np.float32), **tol)
    # inference afterwards normalises with the updated moving statistics
    out, mean, var = [o.asnumpy() for o in ex.forward(is_train=False)]
    assert_almost_equal(out.ravel(), np.array(want["infer_out"], np.float32), **tol)
    assert_almost_equal(mean, np.array(want["mm2"], np.float32), **tol)
    assert_almost_equal(var, np.array(want["infer_var"], np.float32), **tol)
    assert_almost_equal(ex.aux_dict["mm"].asnumpy(), np.array(want["mm2"], np.float32), **tol)  # not updated


@pytest.mark.parametrize("shape,axis", [((5, 3), 1), ((2, 3, 2, 2), 1), ((2, 2, 3), -1), ((3, 2, 2, 2), -1),
                                        ((2, 4, 3), 0)])
@pytest.mark.parametrize("fix_gamma", [False, True])
def test_forward_and_gradients_against_formulas(shape, axis, fix_gamma):
    x, head, gamma, beta, mm, mv = _inputs(shape, axis, np.float64)
    x = x + np.arange(x.size).reshape(shape) * 0.01  # no symmetric ties
    ex = _bind(_sym(axis=axis, fix_gamma=fix_gamma, output_mean_var=True), x, gamma, beta, mm, mv)
    ref = _np_train(x, head, gamma, beta, axis, fix_gamma)
    out, mean, invstd = [o.asnumpy() for o in ex.forward(is_train=True)]
    for got, key in ((out, "out"), (mean, "mean"), (invstd, "invstd")):
        assert_almost_equal(got, ref[key], rtol=1e-10, atol=1e-12)
    c = shape[axis]
    ex.backward([mx.nd.array(head, dtype=np.float64), mx.nd.ones(c, dtype=np.float64),
                 mx.nd.ones(c, dtype=np.float64)])  # mean/var head gradients are ignored, as in MXNet
    for k in ("x", "g", "b"):
        assert_almost_equal(ex.grad_dict[k].asnumpy(), ref["g" + k], rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("shape,axis,fix_gamma", [((4, 3), 1, False), ((2, 3, 2, 2), 1, True),
                                                  ((2, 2, 3), -1, False)])
def test_numeric_gradient_training(shape, axis, fix_gamma):
    x, _, gamma, beta, mm, mv = _inputs(shape, axis, np.float64)
    loc = {"x": x + np.linspace(0, 0.3, x.size).reshape(shape), "g": gamma, "b": beta}
    check_numeric_gradient(_sym(axis=axis, fix_gamma=fix_gamma), loc, aux_states=[mm, mv], numeric_eps=1e-6,
                           rtol=1e-5, atol=1e-7, use_forward_train=True, dtype=np.float64)


def test_use_global_stats_in_training():
    x, head, gamma, beta, mm, mv = _inputs((4, 3), 1)
    ex = _bind(_sym(fix_gamma=False, use_global_stats=True, output_mean_var=True), x, gamma, beta, mm, mv)
    out, mean, invstd = [o.asnumpy() for o in ex.forward(is_train=True)]
    inv = 1 / np.sqrt(mv + EPS)
    assert_almost_equal(out, (x - mm) * inv * gamma + beta, rtol=1e-5, atol=1e-6)
    assert_almost_equal(mean, mm)
    assert_almost_equal(invstd, inv, rtol=1e-6)
    ex.backward([mx.nd.array(head), mx.nd.zeros(3), mx.nd.zeros(3)])
    assert_almost_equal(ex.grad_dict["x"].asnumpy(), head * inv * gamma, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ex.aux_dict["mm"].asnumpy(), mm)  # no update
    np.testing.assert_array_equal(ex.aux_dict["mv"].asnumpy(), mv)


def test_inference_program_has_no_training_nodes_and_no_update():
    x, _, gamma, beta, mm, mv = _inputs((4, 3), 1)
    ex = _bind(_sym(fix_gamma=False), x, gamma, beta, mm, mv, grad_req="null")
    out = ex.forward(is_train=False)[0].asnumpy()
    assert_almost_equal(out, (x - mm) / np.sqrt(mv + EPS) * gamma + beta, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ex.aux_dict["mm"].asnumpy(), mm)
    ops = {op for k in ex.compile_report().kernels for op in k["ops"]}
    assert "mean" not in ops and "square" not in ops, ops
    ex.forward(is_train=True)  # grad_req null: a training program without gradients
    assert_almost_equal(ex.aux_dict["mm"].asnumpy(), mm * MOM + x.mean(0) * (1 - MOM), rtol=1e-6)


@pytest.mark.parametrize("case", sorted(MXNET, key=str), ids=str)
def test_imperative_record_matches_symbolic(case):
    shape, axis, fix_gamma = case
    want = MXNET[case]
    red = tuple(a for a in range(len(shape)) if a != axis % len(shape))
    x, head, gamma, beta, mm, mv = _inputs(shape, axis)
    xs, gs, bs = mx.nd.array(x), mx.nd.array(gamma), mx.nd.array(beta)
    mms, mvs = mx.nd.array(mm), mx.nd.array(mv)
    for a in (xs, gs, bs):
        a.attach_grad()
    with autograd.record():
        y = mx.nd.BatchNorm(xs, gs, bs, mms, mvs, eps=EPS, momentum=MOM, fix_gamma=fix_gamma, axis=axis)
    y.backward(mx.nd.array(head))
    assert_almost_equal(y.asnumpy().ravel(), np.array(want["out"], np.float32), rtol=1e-5, atol=1e-6)
    assert_almost_equal(mms.asnumpy(), mm * MOM + x.mean(red) * (1 - MOM), rtol=1e-5, atol=1e-6)
    assert_almost_equal(mvs.asnumpy(), mv * MOM + x.var(red) * (1 - MOM), rtol=1e-5, atol=1e-6)
    ex = _bind(_sym(axis=axis, fix_gamma=fix_gamma), x, gamma, beta, mm, mv)
    ex.forward(is_train=True)
    ex.backward([mx.nd.array(head)])
    for arr, k in ((xs, "x"), (gs, "g"), (bs, "b")):
        assert_almost_equal(arr.grad.asnumpy(), ex.grad_dict[k].asnumpy(), rtol=1e-5, atol=1e-6)
    assert_almost_equal(xs.grad.asnumpy().ravel(), np.array(want["gx"], np.float32), rtol=1e-4, atol=1e-5)
    assert_almost_equal(gs.grad.asnumpy(), np.array(want["gg"], np.float32), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(mms.asnumpy(), ex.aux_dict["mm"].asnumpy())


def test_imperative_modes():
    x, _, gamma, beta, mm, mv = _inputs((2, 3, 2, 2), 1)
    args = [mx.nd.array(a) for a in (x, gamma, beta)]
    mms, mvs = mx.nd.array(mm), mx.nd.array(mv)
    out = mx.nd.BatchNorm(*args, mms, mvs, fix_gamma=False, output_mean_var=True)  # inference: no update
    np.testing.assert_array_equal(mms.asnumpy(), mm)
    assert_almost_equal(out[2].asnumpy(), 1 / np.sqrt(mv + EPS), rtol=1e-6)
    with autograd.train_mode():  # training without recording still updates in place
        out = mx.nd.BatchNorm(*args, mms, mvs, fix_gamma=False, output_mean_var=True)
        y2 = mx.nd.BatchNorm(*args, mms, mvs, fix_gamma=False)  # queued after the first update
    red = (0, 2, 3)
    assert_almost_equal(out[1].asnumpy(), x.mean(red), rtol=1e-5, atol=1e-6)
    m1 = mm * MOM + x.mean(red) * (1 - MOM)
    assert_almost_equal(mms.asnumpy(), m1 * MOM + x.mean(red) * (1 - MOM), rtol=1e-5, atol=1e-6)
    v1 = mv * MOM + x.var(red) * (1 - MOM)
    assert_almost_equal(mvs.asnumpy(), v1 * MOM + x.var(red) * (1 - MOM), rtol=1e-5, atol=1e-6)
    assert_almost_equal(y2.asnumpy(), out[0].asnumpy(), rtol=1e-6, atol=1e-6)


def test_executor_sgd_step_and_grad_add():
    data = mx.sym.Variable("data")
    net = mx.sym.BatchNorm(data, fix_gamma=False, name="bn", eps=EPS, momentum=MOM)
    x, head, gamma, beta, _, _ = _inputs((4, 3), 1)
    ex = net.simple_bind(mx.cpu(), data=(4, 3))
    ex.arg_dict["data"][:] = x
    ex.arg_dict["bn_gamma"][:] = gamma
    ex.arg_dict["bn_beta"][:] = beta
    ex.aux_dict["bn_moving_var"][:] = 1.0
    ex.forward(is_train=True)
    ex.backward([mx.nd.array(head)])
    ref = _np_train(x, head, gamma, beta, 1, False)
    assert_almost_equal(ex.grad_dict["bn_gamma"].asnumpy(), ref["gg"], rtol=1e-4, atol=1e-5)
    lr = 0.1
    for name in ("bn_gamma", "bn_beta"):
        ex.arg_dict[name][:] = ex.arg_dict[name] - lr * ex.grad_dict[name]
    out = ex.forward(is_train=True)[0].asnumpy()
    ref2 = _np_train(x, head, gamma - lr * ref["gg"], beta - lr * ref["gb"], 1, False)
    assert_almost_equal(out, ref2["out"], rtol=1e-4, atol=1e-5)
    assert_almost_equal(ex.aux_dict["bn_moving_mean"].asnumpy(), x.mean(0) * (1 - MOM) * (1 + MOM), rtol=1e-5)

    add = _bind(_sym(fix_gamma=False), x, gamma, beta, np.zeros(3, np.float32), np.ones(3, np.float32),
                grad_req="add")
    for _ in range(2):
        add.forward(is_train=True)
        add.backward([mx.nd.array(head)])
    assert_almost_equal(add.grad_dict["g"].asnumpy(), 2 * ref["gg"], rtol=1e-4, atol=1e-5)


def test_backward_after_inference_forward_is_refused():
    x, head, gamma, beta, mm, mv = _inputs((4, 3), 1)
    ex = _bind(_sym(), x, gamma, beta, mm, mv)
    ex.forward(is_train=False)
    with pytest.raises(MXNetError, match="is_train"):
        ex.backward([mx.nd.array(head)])


def test_program_reports_aux_updates():
    from kiln.compiler.pipeline import compile_program
    sym = _sym()
    shapes = {"x": (4, 3), "g": (3,), "b": (3,), "mm": (3,), "mv": (3,)}
    types = {k: "float32" for k in shapes}
    _, info = compile_program(sym._outputs, shapes, types, is_train=True)
    assert sorted(info["aux_updates"]) == ["mm", "mv"]
    _, info = compile_program(sym._outputs, shapes, types, is_train=False)
    assert info["aux_updates"] == {}
