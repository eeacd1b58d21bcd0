"""The registry itself: every operator is declared completely and consistently."""
import pytest

import kiln as mx
from kiln.compiler.ops import registry
from kiln.compiler.ops.registry import KINDS
from kiln.compiler.ops.optimizer import UPDATE_OPS

# operators without a gradient, each for a stated reason
NO_GRADIENT = {
    "batch_take": "integer gather used for inference (MXNet has no gradient either)",
}
NO_GRADIENT.update(dict.fromkeys(UPDATE_OPS, "optimiser update rule (MXNet has no gradient either)"))
OPS = registry.all_ops()


@pytest.mark.parametrize("op", OPS, ids=[o.name for o in OPS])
def test_declaration_is_complete(op):
    assert op.kind in KINDS
    if op.kind == "composite":
        assert op.expand is not None and op.lower is None
    else:
        assert op.lower is not None
    if not op.name.startswith("_"):
        assert op.reference is not None, "public operator %s needs a numpy reference" % op.name
        assert op.gradient is not None or op.kind == "composite" or op.name in NO_GRADIENT
    for alias in op.aliases:
        assert registry.get(alias) is op
    # defaults of every optional field parse back through the field itself
    for key, field in op.schema.items():
        if not field.required and field.default is not None:
            assert field.convert(field.format(field.default)) == field.convert(field.default), key


@pytest.mark.parametrize("name", registry.all_names())
def test_every_name_is_a_sym_and_nd_function(name):
    assert callable(getattr(mx.sym, name))
    assert callable(getattr(mx.nd, name))


def test_nd_helpers_dispatch_on_scalars():
    a = mx.nd.array([1.0, 4.0])
    assert mx.nd.maximum(a, 2).asnumpy().tolist() == [2.0, 4.0]
    assert mx.nd.minimum(3, a).asnumpy().tolist() == [1.0, 3.0]
    assert mx.nd.power(2, a).asnumpy().tolist() == [2.0, 16.0]
    assert mx.nd.maximum(a, mx.nd.array([[0.0], [5.0]])).shape == (2, 2)
