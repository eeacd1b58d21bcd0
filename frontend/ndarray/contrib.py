"""``mx.nd.contrib``: the registry's ``_contrib_*`` operators under their short names, and
MXNet's ``adamw_update`` / ``mp_adamw_update``, whose ``rescale_grad`` may be a number."""
from __future__ import annotations

from ..base import numeric_types
from ..compiler.ops import registry as _registry
from . import _make_op, empty, full
from .ndarray import NDArray, invoke

_PREFIX = "_contrib_"

for _fname in _registry.all_names():
    if _fname.startswith(_PREFIX):
        globals()[_fname[len(_PREFIX):]] = _make_op(_fname, _registry.get(_fname))


def _update(opname, arrays, states, rescale_grad, out, kwargs, rescale_dtype):
    """The states (mean, var, master copy) are always updated in place, as MXNet's mutable
    inputs; ``out`` only chooses where the new weight goes."""
    weight = arrays[0]
    if isinstance(rescale_grad, numeric_types):
        rescale_grad = full((1,), rescale_grad, ctx=weight.context, dtype=rescale_dtype)
    if out is None:
        out = empty(weight.shape, weight.context, weight.dtype)
    if not isinstance(out, NDArray):
        raise TypeError("%s: out must be one NDArray (the new weight), got %s" % (opname, type(out).__name__))
    invoke(opname, list(arrays) + [rescale_grad], kwargs, out=[out] + list(states))
    return out


def adamw_update(weight, grad, mean, var, rescale_grad, lr, eta, beta1=0.9, beta2=0.999, epsilon=1e-8, wd=0,
                 clip_gradient=-1, out=None, name=None):
    """One AdamW step: w -= eta * (lr * mean / (sqrt(var) + epsilon) + wd * w)."""
    return _update("_adamw_update", (weight, grad, mean, var), (mean, var), rescale_grad, out,
                   dict(lr=lr, eta=eta, beta1=beta1, beta2=beta2, epsilon=epsilon, wd=wd,
                        clip_gradient=clip_gradient), weight.dtype)


def mp_adamw_update(weight, grad, mean, var, weight32, rescale_grad, lr, eta, beta1=0.9, beta2=0.999,
                    epsilon=1e-8, wd=0, clip_gradient=-1, out=None, name=None):
    """adamw_update on a float32 master copy (float16 weights)."""
    return _update("_mp_adamw_update", (weight, grad, mean, var, weight32), (mean, var, weight32), rescale_grad,
                   out,
                   dict(lr=lr, eta=eta, beta1=beta1, beta2=beta2, epsilon=epsilon, wd=wd,
                        clip_gradient=clip_gradient), "float32")
