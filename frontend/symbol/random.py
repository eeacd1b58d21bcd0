"""``mx.sym.random``: MXNet 1.9's sampling functions as graph nodes.

Numbers give ``_random_*`` nodes (with ``shape=()`` the output shape is inferred from
the graph, as in MXNet); Symbols give ``_sample_*`` nodes, one sample set of ``shape``
per parameter element. Random nodes are ordinary operator nodes: they add no argument
to ``list_arguments()`` (the generator key is a hidden input of the compiled program).
"""
from __future__ import annotations

from ..base import numeric_types
from ..ndarray.random import _SCALAR_NAMES, _attrs  # the attribute rules are the same for both
from .symbol import Symbol, _create

__all__ = ["uniform", "normal", "randn", "exponential", "gamma", "poisson", "negative_binomial",
           "generalized_negative_binomial", "multinomial", "shuffle", "randint"]

def _random_helper(random, sampler, params, shape, dtype, kwargs):
    name = kwargs.pop("name", None)
    attr = kwargs.pop("attr", None)
    if isinstance(params[0], Symbol):
        if sampler is None:
            raise ValueError("%s takes its parameters as numbers, not Symbols" % random)
        for p in params[1:]:
            if not isinstance(p, Symbol):
                raise ValueError("Distribution parameters must all have the same type, but got both %s and %s."
                                 % (type(params[0]), type(p)))
        return _create(sampler, list(params), _attrs(shape, dtype, kwargs), name=name, attr=attr)
    if isinstance(params[0], numeric_types):
        for p in params[1:]:
            if not isinstance(p, numeric_types):
                raise ValueError("Distribution parameters must all have the same type, but got both %s and %s."
                                 % (type(params[0]), type(p)))
        kwargs.pop("ctx", None)
        attrs = _attrs(shape, dtype, dict(kwargs, **dict(zip(_SCALAR_NAMES[random], params))))
        return _create(random, [], attrs, name=name, attr=attr)
    raise ValueError("Distribution parameters must be either Symbol or numbers, but got %s." % type(params[0]))


def uniform(low=0, high=1, shape=None, dtype=None, **kwargs):
    return _random_helper("_random_uniform", "_sample_uniform", [low, high], shape, dtype, kwargs)


def normal(loc=0, scale=1, shape=None, dtype=None, **kwargs):
    return _random_helper("_random_normal", "_sample_normal", [loc, scale], shape, dtype, kwargs)


def randn(*shape, **kwargs):
    loc = kwargs.pop("loc", 0)
    scale = kwargs.pop("scale", 1)
    dtype = kwargs.pop("dtype", None)
    return normal(loc, scale, shape or None, dtype, **kwargs)


def poisson(lam=1, shape=None, dtype=None, **kwargs):
    return _random_helper("_random_poisson", "_sample_poisson", [lam], shape, dtype, kwargs)


def exponential(scale=1, shape=None, dtype=None, **kwargs):
    """Density ``exp(-x/scale)/scale``; the operators take lam = 1/scale."""
    if isinstance(scale, Symbol):
        lam = _create("_rdiv_scalar", [scale], {"scalar": 1.0})
    else:
        lam = 1.0 / scale if isinstance(scale, numeric_types) and scale != 0 else scale
    return _random_helper("_random_exponential", "_sample_exponential", [lam], shape, dtype, kwargs)


def gamma(alpha=1, beta=1, shape=None, dtype=None, **kwargs):
    return _random_helper("_random_gamma", "_sample_gamma", [alpha, beta], shape, dtype, kwargs)


def negative_binomial(k=1, p=1, shape=None, dtype=None, **kwargs):
    return _random_helper("_random_negative_binomial", "_sample_negative_binomial", [k, p], shape, dtype, kwargs)


def generalized_negative_binomial(mu=1, alpha=1, shape=None, dtype=None, **kwargs):
    return _random_helper("_random_generalized_negative_binomial", "_sample_generalized_negative_binomial",
                          [mu, alpha], shape, dtype, kwargs)


def randint(low, high, shape=None, dtype=None, **kwargs):
    return _random_helper("_random_randint", None, [low, high], shape, dtype, kwargs)


def multinomial(data, shape=None, get_prob=False, dtype="int32", **kwargs):
    name = kwargs.pop("name", None)
    attr = kwargs.pop("attr", None)
    return _create("_sample_multinomial", [data], _attrs(shape, dtype, dict(kwargs, get_prob=get_prob)),
                   name=name, attr=attr)


def shuffle(data, **kwargs):
    name = kwargs.pop("name", None)
    attr = kwargs.pop("attr", None)
    return _create("_shuffle", [data], kwargs, name=name, attr=attr)
