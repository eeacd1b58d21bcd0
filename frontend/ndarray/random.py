"""``mx.nd.random``: MXNet 1.9's sampling functions over the random operators.

Distribution parameters given as numbers run the ``_random_*`` operators (output shape
from ``shape=``, (1,) when neither shape nor out is given, as MXNet); given as NDArrays
they run the ``_sample_*`` operators (one sample set of ``shape`` per parameter element).
"""
from __future__ import annotations

from ..base import numeric_types
from ..context import Context, current_context
from .ndarray import NDArray, invoke

__all__ = ["uniform", "normal", "randn", "exponential", "gamma", "poisson", "negative_binomial",
           "generalized_negative_binomial", "multinomial", "shuffle", "randint"]


def _attrs(shape, dtype, kwargs):
    attrs = dict(kwargs)
    if shape is not None:
        attrs["shape"] = (shape,) if isinstance(shape, int) else tuple(shape)
    if dtype is not None:
        attrs["dtype"] = dtype
    return attrs


def _random_helper(random, sampler, params, shape, dtype, ctx, out, kwargs):
    """MXNet's dispatch: all NDArrays -> ``sampler``; all numbers -> ``random``."""
    if isinstance(params[0], NDArray):
        if sampler is None:
            raise ValueError("%s takes its parameters as numbers, not NDArrays" % random)
        for p in params[1:]:
            if not isinstance(p, NDArray):
                raise ValueError("Distribution parameters must all have the same type, but got both %s and %s."
                                 % (type(params[0]), type(p)))
        outs = invoke(sampler, list(params), _attrs(shape, dtype, kwargs), out=out)
        return outs[0]
    if isinstance(params[0], numeric_types):
        for p in params[1:]:
            if not isinstance(p, numeric_types):
                raise ValueError("Distribution parameters must all have the same type, but got both %s and %s."
                                 % (type(params[0]), type(p)))
        if shape is None and out is None:
            shape = 1
        if shape is None:
            shape = out.shape
        names = _SCALAR_NAMES[random]
        attrs = _attrs(shape, dtype, dict(kwargs, **dict(zip(names, params))))
        ctx = ctx if ctx is not None else (out.context if out is not None else current_context())
        with Context(ctx):
            return invoke(random, [], attrs, out=out)[0]
    raise ValueError("Distribution parameters must be either NDArray or numbers, but got %s." % type(params[0]))


_SCALAR_NAMES = {
    "_random_uniform": ("low", "high"), "_random_normal": ("loc", "scale"), "_random_gamma": ("alpha", "beta"),
    "_random_exponential": ("lam",), "_random_poisson": ("lam",), "_random_negative_binomial": ("k", "p"),
    "_random_generalized_negative_binomial": ("mu", "alpha"), "_random_randint": ("low", "high"),
}


def uniform(low=0, high=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Samples from U[low, high)."""
    return _random_helper("_random_uniform", "_sample_uniform", [low, high], shape, dtype, ctx, out, kwargs)


def normal(loc=0, scale=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Samples from N(loc, scale**2)."""
    return _random_helper("_random_normal", "_sample_normal", [loc, scale], shape, dtype, ctx, out, kwargs)


def randn(*shape, **kwargs):
    """Standard normal samples of shape ``shape`` (loc/scale/dtype/ctx/out as keywords)."""
    loc = kwargs.pop("loc", 0)
    scale = kwargs.pop("scale", 1)
    dtype = kwargs.pop("dtype", None)
    ctx = kwargs.pop("ctx", None)
    out = kwargs.pop("out", None)
    return normal(loc, scale, shape or None, dtype, ctx, out, **kwargs)


def poisson(lam=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    return _random_helper("_random_poisson", "_sample_poisson", [lam], shape, dtype, ctx, out, kwargs)


def exponential(scale=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Samples with density ``exp(-x/scale)/scale`` (the operators take lam = 1/scale)."""
    if isinstance(scale, NDArray):
        lam = invoke("_rdiv_scalar", [scale], {"scalar": 1.0})[0]
    elif isinstance(scale, numeric_types):
        lam = 1.0 / scale if scale != 0 else float("inf")
    else:
        lam = scale
    return _random_helper("_random_exponential", "_sample_exponential", [lam], shape, dtype, ctx, out, kwargs)


def gamma(alpha=1, beta=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Gamma samples with shape ``alpha`` and scale ``beta``."""
    return _random_helper("_random_gamma", "_sample_gamma", [alpha, beta], shape, dtype, ctx, out, kwargs)


def negative_binomial(k=1, p=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Failures before the k-th success with success probability p."""
    return _random_helper("_random_negative_binomial", "_sample_negative_binomial", [k, p], shape, dtype, ctx,
                          out, kwargs)


def generalized_negative_binomial(mu=1, alpha=1, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Negative binomial with mean ``mu`` and dispersion ``alpha`` (Poisson when alpha = 0)."""
    return _random_helper("_random_generalized_negative_binomial", "_sample_generalized_negative_binomial",
                          [mu, alpha], shape, dtype, ctx, out, kwargs)


def randint(low, high, shape=None, dtype=None, ctx=None, out=None, **kwargs):
    """Uniform integers in [low, high) (int32 unless dtype='int64')."""
    return _random_helper("_random_randint", None, [low, high], shape, dtype, ctx, out, kwargs)


def multinomial(data, shape=None, get_prob=False, out=None, dtype="int32", **kwargs):
    """Category indices drawn from each row of probabilities ``data`` (last axis); with
    ``get_prob=True`` also the log-probabilities of the drawn samples."""
    attrs = _attrs(shape, dtype, dict(kwargs, get_prob=get_prob))
    outs = invoke("_sample_multinomial", [data], attrs, out=out)
    return outs if get_prob else outs[0]


def shuffle(data, **kwargs):
    """``data`` with its first axis randomly permuted."""
    return invoke("_shuffle", [data], dict(kwargs))[0]
