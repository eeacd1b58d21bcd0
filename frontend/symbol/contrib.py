"""``mx.sym.contrib``: the registry's ``_contrib_*`` operators under their short names, and
MXNet's ``adamw_update`` / ``mp_adamw_update``, whose ``rescale_grad`` may be a number."""
from __future__ import annotations

from ..compiler.ops import registry as _registry
from . import _make_op, full
from .symbol import Symbol, _create

_PREFIX = "_contrib_"

for _fname in _registry.all_names():
    if _fname.startswith(_PREFIX):
        globals()[_fname[len(_PREFIX):]] = _make_op(_fname)


def _rescale(rescale_grad):
    return rescale_grad if isinstance(rescale_grad, Symbol) else full((1,), rescale_grad)


def adamw_update(weight, grad, mean, var, rescale_grad, lr, eta, beta1=0.9, beta2=0.999, epsilon=1e-8, wd=0,
                 clip_gradient=-1, name=None, **kwargs):
    return _create("_adamw_update", [weight, grad, mean, var, _rescale(rescale_grad)],
                   dict(kwargs, lr=lr, eta=eta, beta1=beta1, beta2=beta2, epsilon=epsilon, wd=wd,
                        clip_gradient=clip_gradient), name=name)


def mp_adamw_update(weight, grad, mean, var, weight32, rescale_grad, lr, eta, beta1=0.9, beta2=0.999,
                    epsilon=1e-8, wd=0, clip_gradient=-1, name=None, **kwargs):
    return _create("_mp_adamw_update", [weight, grad, mean, var, weight32, _rescale(rescale_grad)],
                   dict(kwargs, lr=lr, eta=eta, beta1=beta1, beta2=beta2, epsilon=epsilon, wd=wd,
                        clip_gradient=clip_gradient), name=name)
