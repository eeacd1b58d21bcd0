"""autograd: recording, gradients against finite differences, higher order, Function."""
import numpy as np
import pytest

import kiln as mx
from kiln import autograd, nd
from kiln.base import MXNetError

RS = np.random.RandomState(7)


def _arr(*shape):
    return nd.array(RS.uniform(-1, 1, shape))


def _numeric_grad(f, x, eps=1e-3):
    """Central differences of the scalar f(numpy x) in float64."""
    x = x.astype(np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        hi, lo = x.copy(), x.copy()
        hi[i] += eps
        lo[i] -= eps
        g[i] = (f(hi) - f(lo)) / (2 * eps)
    return g


def _scalar(fn):
    """Run an NDArray function on float64 numpy input without recording."""
    def f(xv):
        return float(fn(nd.array(xv, dtype=np.float64)).asnumpy().sum())
    return f


@pytest.mark.parametrize("name,fn", [
    ("exp_mul_sum", lambda x: nd.exp(x) * x + nd.sum(x)),
    ("tanh_broadcast", lambda x: nd.tanh(x) * nd.array([[1.0, -2.0, 0.5]], dtype=x.dtype)),
    ("softmax_log", lambda x: nd.log(nd.softmax(x, axis=1) + 1)),
    ("dot_sigmoid", lambda x: nd.sigmoid(nd.dot(x, x.T))),
    ("slice_pow", lambda x: x[1:, :2] ** 3),
    ("mean_axis_relu", lambda x: nd.relu(x - nd.mean(x, axis=0, keepdims=True))),
])
def test_first_order_matches_finite_differences(name, fn):
    xv = RS.uniform(-1, 1, (2, 3))
    x = nd.array(xv, dtype=np.float64)
    x.attach_grad()
    with autograd.record():
        y = fn(x)
    y.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), _numeric_grad(_scalar(fn), xv), rtol=1e-4, atol=1e-6)


def test_second_order_matches_finite_differences_of_first_order():
    def f(x):
        return nd.sin(x) * x * x

    xv = RS.uniform(-1, 1, (2, 3))
    v = RS.uniform(-1, 1, (2, 3))

    def first_grad(xn):
        x = nd.array(xn, dtype=np.float64)
        x.attach_grad()
        with autograd.record():
            y = f(x)
        y.backward()
        return x.grad.asnumpy()

    x = nd.array(xv, dtype=np.float64)
    x.attach_grad()
    with autograd.record():
        y = f(x)
        (g,) = autograd.grad(y, [x], create_graph=True)
        h = (g * nd.array(v, dtype=np.float64)).sum()
    h.backward()
    eps = 1e-4
    hv = (first_grad(xv + eps * v) - first_grad(xv - eps * v)) / (2 * eps)  # Hessian . v
    np.testing.assert_allclose(x.grad.asnumpy(), hv, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g.asnumpy(), first_grad(xv), rtol=1e-6)


def test_third_order_of_a_cube():
    x = nd.array([0.5, -1.0, 2.0], dtype=np.float64)
    x.attach_grad()
    with autograd.record():
        y = (x ** 3).sum()
        (g1,) = autograd.grad(y, [x], create_graph=True)
        (g2,) = autograd.grad(g1.sum(), [x], create_graph=True)
        s = g2.sum()
    s.backward()
    np.testing.assert_allclose(g1.asnumpy(), 3 * x.asnumpy() ** 2)
    np.testing.assert_allclose(g2.asnumpy(), 6 * x.asnumpy())
    np.testing.assert_allclose(x.grad.asnumpy(), [6, 6, 6])


def test_grad_leaves_dot_grad_alone_and_accepts_head_grads():
    x = _arr(2, 3)
    x.attach_grad()
    with autograd.record():
        y = x * x
    hg = _arr(2, 3)
    (g,) = autograd.grad(y, [x], head_grads=hg)
    np.testing.assert_allclose(g.asnumpy(), 2 * x.asnumpy() * hg.asnumpy(), rtol=1e-6)
    assert not x.grad.asnumpy().any()


def test_grad_req_add_write_null():
    x = _arr(3)
    x.attach_grad(grad_req="add")
    for _ in range(3):
        with autograd.record():
            y = (x * 2).sum()
        y.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), [6, 6, 6])
    n = _arr(3)
    n.attach_grad(grad_req="null")
    with autograd.record():
        y = (n * x).sum()
    y.backward()
    assert not n.grad.asnumpy().any()


def test_unreachable_variable_keeps_its_gradient_and_blockgrad_stops_flow():
    x, w = _arr(3), _arr(3)
    x.attach_grad()
    w.attach_grad()
    w.grad[:] = 7
    with autograd.record():
        y = (nd.BlockGrad(x * 3) + x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), [1, 1, 1])
    np.testing.assert_allclose(w.grad.asnumpy(), [7, 7, 7])


def test_second_backward_needs_retain_graph():
    x = _arr(2)
    x.attach_grad()
    with autograd.record():
        y = nd.exp(x).sum()
    y.backward()
    with pytest.raises(MXNetError, match="retain_graph"):
        y.backward()


def test_backward_of_an_unrecorded_array_is_an_error():
    x = _arr(2)
    x.attach_grad()
    y = x * 2
    with pytest.raises(MXNetError, match="record"):
        y.backward()
    with autograd.record():
        z = x * 2
    with pytest.raises(MXNetError, match="shape"):
        z.backward(out_grad=nd.ones((3,)))


def test_writing_into_a_recorded_array_is_refused():
    x = _arr(3)
    x.attach_grad()
    with autograd.record():
        y = x * 1
        with pytest.raises(MXNetError, match="already in a computational graph"):
            y *= x
        fresh = nd.zeros((3,))
        nd.elemwise_mul(x, x, out=fresh)  # an array outside the graph may be written
        s = fresh.sum()
    s.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), 2 * x.asnumpy(), rtol=1e-6)


def test_integer_index_and_take_while_recording():
    x = _arr(3, 4)
    x.attach_grad()
    with autograd.record():
        y = x[1] * 2 + x[nd.array([0, 0])].sum(axis=0)
    y.backward()
    expected = np.zeros((3, 4))
    expected[1] = 2
    expected[0] = 2
    np.testing.assert_allclose(x.grad.asnumpy(), expected)


def test_function_with_saved_tensors():
    class Sigmoid(autograd.Function):
        def forward(self, x):
            y = 1 / (1 + nd.exp(-x))
            self.save_for_backward(y)
            return y

        def backward(self, dy):
            (y,) = self.saved_tensors
            return dy * y * (1 - y)

    x = _arr(2, 3)
    x.attach_grad()
    with autograd.record():
        z = (Sigmoid()(x) * 3).sum()
    z.backward()
    s = 1 / (1 + np.exp(-x.asnumpy()))
    np.testing.assert_allclose(x.grad.asnumpy(), 3 * s * (1 - s), rtol=1e-5)


def test_function_backward_with_wrong_count_is_an_error():
    class Bad(autograd.Function):
        def forward(self, x, y):
            return x + y

        def backward(self, dz):
            return dz

    x, y = _arr(2), _arr(2)
    x.attach_grad()
    with autograd.record():
        z = Bad()(x, y)
    with pytest.raises(MXNetError, match="1 gradients for 2 inputs"):
        z.backward()


def test_get_symbol_rebuilds_the_recorded_graph():
    x = _arr(2, 3)
    x.attach_grad()
    with autograd.record():
        y = nd.relu(nd.exp(x) - 1.5) * 2
    sym = autograd.get_symbol(y)
    assert isinstance(sym, mx.sym.Symbol)
    (arg,) = sym.list_arguments()
    out = sym.eval(ctx=mx.cpu(), **{arg: x})[0]
    np.testing.assert_allclose(out.asnumpy(), y.asnumpy(), rtol=1e-6)


def test_flags_are_per_thread_and_restored():
    import threading
    seen = []
    with autograd.record():
        t = threading.Thread(target=lambda: seen.append((autograd.is_recording(), autograd.is_training())))
        t.start()
        t.join()
        assert autograd.is_recording() and autograd.is_training()
    assert seen == [(False, False)]
    assert not autograd.is_recording() and not autograd.is_training()


def test_mark_variables_uses_the_given_buffer():
    v = nd.array([1.0, 2.0])
    g = nd.array([10.0, 10.0])
    autograd.mark_variables([v], [g], grad_reqs="add")
    with autograd.record():
        y = (v * v).sum()
    y.backward()
    np.testing.assert_allclose(g.asnumpy(), [12, 14])
    assert v.grad is g


def test_detach_cuts_the_graph():
    x = _arr(3)
    x.attach_grad()
    with autograd.record():
        y = x * x
        z = (y.detach() * x).sum()
    z.backward()
    np.testing.assert_allclose(x.grad.asnumpy(), x.asnumpy() ** 2, rtol=1e-6)
