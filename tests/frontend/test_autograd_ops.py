"""Every differentiable registry operator: the autograd tape gives the Executor's gradient."""
import numpy as np
import pytest

import kiln as mx
from kiln import autograd
from kiln.base import MXNetError
from kiln.compiler.ops import registry
from tests.compiler.test_generic import case

SHAPE = (3, 4, 2)


def _u(rng, *shape):
    return rng.uniform(-1, 1, shape).astype("float32")


# operators whose inputs are not all of one shape
EXTRA = {
    "Activation": lambda r: ([_u(r, 3, 4)], {"act_type": "softrelu"}),
    "BatchNorm": lambda r: ([_u(r, 3, 4, 2), _u(r, 4), _u(r, 4), _u(r, 4), r.uniform(0.5, 1, 4).astype("float32")],
                            {"use_global_stats": True, "fix_gamma": False}),
    "Convolution": lambda r: ([_u(r, 2, 3, 5, 5), _u(r, 2, 3, 3, 3), _u(r, 2)], {"kernel": (3, 3), "num_filter": 2}),
    "FullyConnected": lambda r: ([_u(r, 3, 4, 2), _u(r, 5, 8), _u(r, 5)], {"num_hidden": 5}),
    "Pooling": lambda r: ([_u(r, 2, 3, 4, 4)], {"kernel": (2, 2), "pool_type": "avg"}),
    "SoftmaxOutput": lambda r: ([_u(r, 3, 4), np.array([0, 3, 1], dtype="float32")], {}),
    "batch_dot": lambda r: ([_u(r, 3, 4, 2), _u(r, 3, 2, 5)], {}),
    "dot": lambda r: ([_u(r, 3, 4, 2), _u(r, 2, 5)], {}),
    "BilinearSampler": lambda r: ([_u(r, 2, 3, 4, 5), 1.2 * _u(r, 2, 2, 3, 3)], {}),
    "GridGenerator": lambda r: ([_u(r, 2, 6)], {"transform_type": "affine", "target_shape": (3, 4)}),
    "SpatialTransformer": lambda r: ([_u(r, 2, 3, 4, 5), _u(r, 2, 6)],
                                     {"target_shape": (3, 3), "transform_type": "affine", "sampler_type": "bilinear"}),
    "CTCLoss": lambda r: ([_u(r, 5, 2, 4), np.array([[1, 2], [3, 0]], dtype="float32")], {}),
    "RNN": lambda r: ([_u(r, 3, 2, 3), _u(r, 56), _u(r, 1, 2, 2), _u(r, 1, 2, 2)],
                      {"state_size": 2, "num_layers": 1, "mode": "lstm", "state_outputs": True}),
}


def _differentiable(op):
    if op.random or "backward" in op.name or op.name.endswith("_grad"):  # gradient helpers are internal
        return False
    return op.gradient is not None or op.kind == "composite"


OPS = sorted({op.name for op in registry.all_ops() if _differentiable(op)})


def _symbolic(op, inputs, attrs, projections):
    """Outputs and {input index: gradient} from an Executor (auxiliary states get none)."""
    names = ["x%d" % i for i in range(len(inputs))]
    out = getattr(mx.sym, op.name)(*[mx.sym.Variable(n) for n in names], **attrs)
    arrays = {n: mx.nd.array(v, dtype=v.dtype) for n, v in zip(names, inputs)}
    args, aux = out.list_arguments(), out.list_auxiliary_states()
    grads = {n: mx.nd.zeros(arrays[n].shape, dtype=arrays[n].dtype) for n in args}
    ex = out.bind(mx.cpu(), {n: arrays[n] for n in args}, args_grad=grads,
                  aux_states={n: arrays[n] for n in aux})
    outs = ex.forward(is_train=True)
    ex.backward([mx.nd.array(p, dtype=p.dtype) for p in projections[:len(outs)]])
    return [o.asnumpy() for o in outs], {names.index(n): grads[n].asnumpy() for n in args}


@pytest.mark.parametrize("opname", OPS)
def test_tape_gradient_equals_executor_gradient(opname):
    op = registry.get(opname)
    rng = np.random.RandomState(3)
    try:
        inputs, attrs = EXTRA[opname](rng) if opname in EXTRA else case(op, rng, SHAPE)
    except Exception as err:  # the shared input table has no valid case for this operator
        pytest.skip("no input case: %s" % err)
    inputs = [np.asarray(x) for x in inputs]
    try:
        ref_outs = mx.nd.__dict__[opname](*[mx.nd.array(x, dtype=x.dtype) for x in inputs], **attrs)
    except (MXNetError, NotImplementedError) as err:
        pytest.skip("operator refuses the generic case: %s" % str(err).splitlines()[0])
    ref_outs = ref_outs if isinstance(ref_outs, list) else [ref_outs]
    projections = [rng.uniform(-1, 1, o.shape).astype(o.dtype) for o in ref_outs]
    try:
        sym_outs, sym_grads = _symbolic(op, inputs, attrs, projections)
    except (MXNetError, NotImplementedError) as err:
        pytest.skip("no symbolic gradient: %s" % str(err).splitlines()[0])

    arrays = [mx.nd.array(x, dtype=x.dtype) for x in inputs]
    for a in arrays:
        a.attach_grad()
    with autograd.record():
        outs = getattr(mx.nd, opname)(*arrays, **attrs)
        outs = outs if isinstance(outs, list) else [outs]
    autograd.backward(outs, [mx.nd.array(p, dtype=p.dtype) for p in projections])
    for o, want in zip(outs, sym_outs):
        np.testing.assert_allclose(o.asnumpy(), want, rtol=1e-5, atol=1e-6)
    for k, want in sym_grads.items():
        np.testing.assert_allclose(arrays[k].grad.asnumpy(), want, rtol=1e-4, atol=1e-5,
                                   err_msg="%s: gradient of input %d" % (opname, k))
