"""Random operators (MXNet 1.9 names and attributes) and the generator they share.

Every random value is a pure function of (seed, run counter, stream, element, draw):
Philox4x32-10 (Salmon et al. 2011, the generator cuRAND uses) written in the kernel
expression IR, so a sampling kernel is an ordinary compiled loop nest. Results do not
depend on how the loop is split over threads, on fusion (a random expression inlined
into a consumer recomputes the very same bits) or on the order kernels run in.

* key ``[k0, k1]``: the seed's low and high 32 bits (the high half xor the run
  counter's high 32 bits, so counters past 2**32 still give new numbers);
* counter ``[c0, c1, c2, c3]``: the element's flat index (low 32 bits; bits 32..47 in
  the low half of c1), the draw number in the high 16 bits of c1 (rejection samplers
  use one Philox block per candidate round), the run counter's low 32 bits, and the
  node's stream id.

``compile_program`` gives every random node a stream id (its index among the random
nodes of the compiled graph) and reads ``[seed, counter]`` from one hidden external
int64 slot, ``__rng_key__``, that the frontend fills before each run. Lowerings receive
that buffer as their last input (fusion's analyses call them without it and get a
stand-in).

Rejection samplers cannot loop open-endedly in a loop nest: each evaluates a fixed
number of candidate rounds and keeps the first accepted one (an ``argmax`` Reduce over
"accepted" scores). The round counts make exhausting them less likely than 1e-15 for
every valid parameter (see ``GAMMA_ROUNDS``, ``PTRS_ROUNDS``, ``POISSON_K``, randint);
if it happens anyway the last candidate is returned.
"""
from __future__ import annotations

import math

import numpy as np

from .. import expr as E
from ..kernel import Buffer, compute
from . import params as P
from .registry import OpDef, register
from .shapes import InferError, unify, unify_type

KEY_SLOT = "__rng_key__"
KEY_SHAPE = (2,)
KEY_DTYPE = "int64"
STREAM = "__stream__"  # lower.py adds the node's stream id to the params a random lowering sees

MASK32 = 0xFFFFFFFF
PHILOX_M = (0xD2511F53, 0xCD9E8D57)
PHILOX_W = (0x9E3779B9, 0xBB67AE85)
PHILOX_ROUNDS = 10

# Marsaglia-Tsang accepts a candidate with probability >= 0.9517 for every shape >= 1
# (the minimum is at shape 1; shapes < 1 are boosted to shape + 1): 12 rounds leave
# 0.0483**12 < 2.6e-16.
GAMMA_ROUNDS = 12
# For shape >= 49 (the gamma inside small-mean Poisson) acceptance exceeds 0.999: 6 rounds
# leave < 1e-18.
GAMMA_ROUNDS_LARGE = 6
# PTRS (Hoermann 1993) accepts with probability >= 0.7525 for every mean >= 10 (the
# minimum is at 10): 26 rounds leave 0.2475**26 < 1.7e-16.
PTRS_ROUNDS = 26
POISSON_SMALL = 10.0
# Means below 10: X = #{i < K: V_i < mean / T}, T ~ Gamma(K + 1) the (K+1)-th arrival of a
# unit-rate Poisson process, is exactly Poisson(mean) whenever X <= K; P(X > 48) < 1e-18.
POISSON_K = 48
POISSON_DRAWS = GAMMA_ROUNDS_LARGE + POISSON_K // 4 + PTRS_ROUNDS
EXHAUST = 5e-16  # target probability of running out of rounds (with the tails: < 1e-15)


# ---- integer helpers (all values int64, 32-bit words in [0, 2**32)) ----
def _i(v):
    return E.const(int(v), "int64")


def _w(x):
    return x if isinstance(x, E.Expr) else _i(x)


def _band(a, b):
    return E.Call("bitand", (_w(a), _w(b)))


def _bor(a, b):
    return E.Call("bitor", (_w(a), _w(b)))


def _bxor(a, b):
    return E.Call("bitxor", (_w(a), _w(b)))


def _shl(a, n):
    return E.Call("shl", (_w(a), _i(n)))


def _lshr(a, n):
    return E.Call("lshr", (_w(a), _i(n)))


def _lo(x):
    return _band(x, MASK32)


def philox(ctr, key, rounds=PHILOX_ROUNDS):
    """Philox4x32 of four 32-bit counter words and two key words (int64 expressions)."""
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0, k1 = _lo(k0 + PHILOX_W[0]), _lo(k1 + PHILOX_W[1])
        p0 = c0 * _i(PHILOX_M[0])  # < 2**64: exact modulo 2**64 in int64
        p1 = c2 * _i(PHILOX_M[1])
        c0, c1, c2, c3 = (_bxor(_bxor(_lshr(p1, 32), c1), k0), _lo(p1),
                          _bxor(_bxor(_lshr(p0, 32), c3), k1), _lo(p0))
    return c0, c1, c2, c3


def philox_numpy(ctr, key, rounds=PHILOX_ROUNDS):
    """The same function on numpy uint64 arrays of 32-bit words (tests' reference)."""
    c = [np.asarray(x, dtype=np.uint64) & np.uint64(MASK32) for x in ctr]
    k = [np.asarray(x, dtype=np.uint64) & np.uint64(MASK32) for x in key]
    m32 = np.uint64(MASK32)
    for r in range(rounds):
        if r:
            k = [(k[0] + np.uint64(PHILOX_W[0])) & m32, (k[1] + np.uint64(PHILOX_W[1])) & m32]
        p0 = c[0] * np.uint64(PHILOX_M[0])
        p1 = c[2] * np.uint64(PHILOX_M[1])
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k[0], p1 & m32, (p0 >> np.uint64(32)) ^ c[3] ^ k[1], p0 & m32]
    return c


def numpy_words(seed, counter, stream, n, draw=0):
    """The four Philox words of elements ``0..n-1`` for a key ``[seed, counter]`` (tests)."""
    seed, counter = np.int64(seed).view(np.uint64), np.int64(counter).view(np.uint64)
    elem = np.arange(n, dtype=np.uint64)
    m32 = np.uint64(MASK32)
    ctr = [elem & m32, (elem >> np.uint64(32)) | np.uint64(draw << 16), np.full(n, counter & m32),
           np.full(n, np.uint64(stream))]
    key = [np.full(n, seed & m32), np.full(n, (seed >> np.uint64(32)) ^ (counter >> np.uint64(32)))]
    return philox_numpy(ctr, key)


class Stream:
    """The random words of one element of one node: ``block(draw)`` gives 4 words."""

    def __init__(self, key, stream, elem):
        seed, run = key.load(_i(0)), key.load(_i(1))
        self.key = (_lo(seed), _lo(_bxor(_lshr(seed, 32), _lshr(run, 32))))
        self.c0, self.c1, self.c2 = _lo(elem), _lshr(elem, 32), _lo(run)
        self.c3 = _i(int(stream) & MASK32)
        self._blocks = {}

    def block(self, draw=0):
        """Philox words for draw number ``draw`` (int < 2**16, or an int64 expression)."""
        if isinstance(draw, int):
            hit = self._blocks.get(draw)
            if hit is None:
                c1 = self.c1 if draw == 0 else _bor(self.c1, _i(draw << 16))
                hit = self._blocks[draw] = philox((self.c0, c1, self.c2, self.c3), self.key)
            return hit
        return philox((self.c0, _bor(self.c1, _shl(draw, 16)), self.c2, self.c3), self.key)


def rng_inputs(params, ins, n_inputs):
    """(key buffer, stream id) of a random lowering; analyses that lower a node without
    the key (fusion's probe) get a stand-in buffer."""
    key = ins[n_inputs] if len(ins) > n_inputs else Buffer("rng_key", KEY_SHAPE, KEY_DTYPE)
    return key, int(params.get(STREAM, 0))


def flat_index(axes, shape, zero_axes=()):
    """Row-major flat position of ``axes`` in ``shape``; ``zero_axes`` read as 0 (a mask shared along them)."""
    idx, stride = None, 1
    for k in reversed(range(len(shape))):
        if k not in zero_axes:
            term = axes[k] if stride == 1 else axes[k] * _i(stride)
            idx = term if idx is None else idx + term
        stride *= shape[k]
    return idx if idx is not None else _i(0)


# ---- words -> uniforms ----
def _f(v, t="float64"):
    return E.const(float(v), t)


def u24(w, open0=False):
    """float32 in [0, 1) from a word's top 24 bits ((0, 1] with ``open0``)."""
    x = _lshr(w, 8)
    if open0:
        x = x + 1
    return E.cast(x, "float32") * _f(2.0 ** -24, "float32")


def u53(w0, w1, open0=False):
    """float64 in [0, 1) from 53 bits of two words ((0, 1] with ``open0``)."""
    x = _bor(_shl(_lshr(w0, 5), 26), _lshr(w1, 6))
    if open0:
        x = x + 1
    return E.cast(x, "float64") * _f(2.0 ** -53)


def u32(w):
    """float64 in (0, 1) from one word: rejection tests and the samplers' internals."""
    return (E.cast(w, "float64") + _f(0.5)) * _f(2.0 ** -32)


def uniform01(s, ct, open0=False, draw=0):
    blk = s.block(draw)
    return u24(blk[0], open0) if ct == "float32" else u53(blk[0], blk[1], open0)


def std_normal(s, ct, draw=0):
    """Box-Muller's cosine branch from one block (24-bit or 53-bit uniforms)."""
    blk = s.block(draw)
    if ct == "float32":
        u1, u2 = u24(blk[0], True), u24(blk[1])
    else:
        u1, u2 = u53(blk[0], blk[1], True), u53(blk[2], blk[3])
    return E.call("sqrt", _f(-2.0, ct) * E.call("log", u1)) * E.call("cos", _f(2 * math.pi, ct) * u2)


def _normal64(blk):
    u1, u2 = u32(blk[0]), u32(blk[1])
    return E.call("sqrt", _f(-2.0) * E.call("log", u1)) * E.call("cos", _f(2 * math.pi) * u2)


def _is_num(x):
    return isinstance(x, (int, float))


def _v(x, t="float64"):
    return _f(x, t) if _is_num(x) else E.cast(x, t)


def _first_accepted(rounds, candidate):
    """Index of the first round whose candidate is accepted (the last round if none)."""
    r = E.fresh_vars(1, "rng")[0]
    ok = candidate(r)
    last = E.cmp("eq", r, _i(rounds - 1))
    score = E.select(ok, _i(2), E.select(last, _i(1), _i(0)))
    return E.Reduce("argmax", [r], [rounds], score, dtype="int64")


def gamma64(s, alpha, draw0=0, rounds=GAMMA_ROUNDS):
    """Gamma(alpha, 1) in float64, Marsaglia-Tsang with alpha < 1 boosted by U**(1/alpha);
    rounds use draws ``draw0 .. draw0 + rounds - 1``."""
    if _is_num(alpha):
        boost = alpha < 1
        a = alpha + 1.0 if boost else float(alpha)
        d, c = _f(a - 1.0 / 3), _f(1.0 / math.sqrt(9 * (a - 1.0 / 3)))
    else:
        alpha = E.cast(alpha, "float64")
        boost = E.cmp("lt", alpha, 1.0)
        a = E.select(boost, alpha + _f(1.0), alpha)
        d = a - _f(1.0 / 3)
        c = _f(1.0) / E.call("sqrt", _f(9.0) * d)

    def cand(r):
        blk = s.block(r + draw0 if draw0 else r)
        x = _normal64(blk)
        t = _f(1.0) + c * x
        v = t * t * t
        lv = E.call("log", E.maximum(v, _f(1e-300)))
        ok = E.Call("and", (E.cmp("gt", v, 0.0),
                            E.cmp("lt", E.call("log", u32(blk[2])), _f(0.5) * x * x + d - d * v + d * lv)))
        return ok, v, blk

    best = _first_accepted(rounds, lambda r: cand(r)[0])
    _, v, blk = cand(best)
    g = d * E.maximum(v, _f(1e-300))
    if _is_num(boost):
        if boost:
            g = g * E.call("exp", E.call("log", u32(blk[3])) / _f(alpha))
        return g
    boosted = g * E.call("exp", E.call("log", u32(blk[3])) / alpha)
    return E.select(boost, boosted, g)


def _poisson_table(s, lam, draw0):
    """Mean known at compile time and < 10: inversion against its CDF, as constants."""
    u = u53(*s.block(draw0)[:2])
    count, cdf, j = None, 0.0, 0
    while j < 4 * POISSON_K:
        pmf = math.exp(j * math.log(lam) - lam - math.lgamma(j + 1)) if lam > 0 else float(j == 0)
        cdf += pmf
        if cdf >= 1.0 or (j > lam and pmf < 1e-18):  # the rest of the tail is below 1e-16
            break
        term = E.cast(E.cmp("ge", u, _f(cdf)), "float64")
        count = term if count is None else count + term
        j += 1
    return count if count is not None else _f(0.0)


def _poisson_small(s, lam, draw0):
    """Mean < 10: Binomial(K, mean / T) with T ~ Gamma(K + 1), exact unless X > K."""
    t = gamma64(s, float(POISSON_K + 1), draw0, GAMMA_ROUNDS_LARGE)
    q = _v(lam) / t * _f(2.0 ** 32)
    j = E.fresh_vars(1, "rng")[0]
    blk = s.block(j + (draw0 + GAMMA_ROUNDS_LARGE))
    hits = None
    for w in blk:
        h = E.cast(E.cmp("lt", E.cast(w, "float64"), q), "float64")
        hits = h if hits is None else hits + h
    return E.Reduce("sum", [j], [POISSON_K // 4], hits)


def _poisson_ptrs(s, lam, draw0):
    """Mean >= 10: Hoermann's PTRS (transformed rejection with squeeze)."""
    if _is_num(lam):
        slam, loglam = math.sqrt(lam), math.log(lam)
        b = 0.931 + 2.53 * slam
        a = -0.059 + 0.02483 * b
        inv_alpha, vr = 1.1239 + 1.1328 / (b - 3.4), 0.9277 - 3.6224 / (b - 2)
        b, a, log_inv_alpha, vr, loglam = _f(b), _f(a), _f(math.log(inv_alpha)), _f(vr), _f(loglam)
        lam = _f(lam)
    else:
        lam = E.cast(lam, "float64")
        loglam = E.call("log", lam)
        b = _f(0.931) + _f(2.53) * E.call("sqrt", lam)
        a = _f(-0.059) + _f(0.02483) * b
        log_inv_alpha = E.call("log", _f(1.1239) + _f(1.1328) / (b - _f(3.4)))
        vr = _f(0.9277) - _f(3.6224) / (b - _f(2.0))

    def cand(r):
        blk = s.block(r + draw0)
        uu = u32(blk[0]) - _f(0.5)
        v = u32(blk[1])
        us = _f(0.5) - E.call("abs", uu)
        k = E.call("floor", (_f(2.0) * a / us + b) * uu + lam + _f(0.43))
        quick = E.Call("and", (E.cmp("ge", us, 0.07), E.cmp("le", v, vr)))
        lhs = E.call("log", v) + log_inv_alpha - E.call("log", a / (us * us) + b)
        rhs = k * loglam - lam - E.call("lgamma", E.maximum(k, _f(0.0)) + _f(1.0))
        squeeze_out = E.Call("and", (E.cmp("lt", us, 0.013), E.cmp("gt", v, us)))
        slow = E.Call("and", (E.Call("and", (E.cmp("ge", k, 0.0), E.Call("not", (squeeze_out,)))),
                              E.cmp("le", lhs, rhs)))
        return E.Call("or", (quick, slow)), k

    best = _first_accepted(PTRS_ROUNDS, lambda r: cand(r)[0])
    return E.maximum(cand(best)[1], _f(0.0))


def poisson64(s, lam, draw0=0):
    """Poisson(lam) as float64 (NaN for a negative or NaN mean); draws ``draw0 ..
    draw0 + POISSON_DRAWS - 1``."""
    if _is_num(lam):
        if lam < POISSON_SMALL:
            return _poisson_table(s, float(lam), draw0)
        return _poisson_ptrs(s, float(lam), draw0)
    lam = E.cast(lam, "float64")
    small = _poisson_small(s, lam, draw0)
    large = _poisson_ptrs(s, lam, draw0 + GAMMA_ROUNDS_LARGE + POISSON_K // 4)
    value = E.select(E.cmp("lt", lam, POISSON_SMALL), small, large)
    return E.select(E.cmp("ge", lam, 0.0), value, _f(float("nan")))


# ---- distributions: fn(stream, args, compute dtype) -> value; args are numbers or Exprs ----
def _uniform(s, args, ct):
    low, high = _v(args[0], ct), _v(args[1], ct)
    return low + (high - low) * uniform01(s, ct)


def _normal(s, args, ct):
    return _v(args[0], ct) + _v(args[1], ct) * std_normal(s, ct)


def _exponential(s, args, ct):
    return -E.call("log", uniform01(s, ct, open0=True)) / _v(args[0], ct)


def _gamma(s, args, ct):
    return gamma64(s, args[0]) * _v(args[1])


def _poisson(s, args, ct):
    return poisson64(s, args[0])


def _negative_binomial(s, args, ct):
    k, p = args
    if _is_num(p) and p >= 1.0:
        return _f(0.0)
    scale = (1.0 - p) / p if _is_num(p) else (_f(1.0) - _v(p)) / _v(p)
    return poisson64(s, gamma64(s, k) * _v(scale), GAMMA_ROUNDS)


def _gen_negative_binomial(s, args, ct):
    mu, alpha = args
    if _is_num(alpha):
        if alpha == 0:
            return poisson64(s, mu)
        return poisson64(s, gamma64(s, 1.0 / alpha) * _f(alpha * mu), GAMMA_ROUNDS)
    mu, alpha = _v(mu), _v(alpha)
    zero = E.cmp("eq", alpha, 0.0)
    shape = _f(1.0) / E.select(zero, _f(1.0), alpha)
    lam = E.select(zero, mu, gamma64(s, shape) * alpha * mu)
    return poisson64(s, lam, GAMMA_ROUNDS)


# ---- shape, dtype and validation rules ----
FLOAT_DTYPES = ("float16", "float32", "float64")
COMMON = {"shape": P.Tuple(()), "ctx": P.Str(""), "dtype": P.DType(None)}


def _out_float_dtype(opname, params, default="float32"):
    t = params.get("dtype") or default
    if t not in FLOAT_DTYPES:
        raise InferError("dtype=%s is not supported by %s (float16, float32 or float64)" % (t, opname))
    return t


def _check(opname, params, rules):
    """``rules``: (attribute, predicate, requirement); raises naming op, attribute and value."""
    for attr, ok, need in rules:
        if not ok(params[attr]):
            raise InferError("invalid parameter %s=%r for %s: %s" % (attr, params[attr], opname, need))


def _nonneg(x):
    return x >= 0


def _pos(x):
    return x > 0


def _prob(x):
    return 0 < x <= 1


RULES = {
    "uniform": lambda p: [("low", lambda v: v <= p["high"], "low must not exceed high=%r" % p["high"])],
    "normal": lambda p: [("scale", _nonneg, "must be >= 0")],
    "exponential": lambda p: [("lam", _pos, "must be > 0")],
    "gamma": lambda p: [("alpha", _pos, "must be > 0"), ("beta", _pos, "must be > 0")],
    "poisson": lambda p: [("lam", _nonneg, "must be >= 0")],
    "negative_binomial": lambda p: [("k", _pos, "must be > 0"), ("p", _prob, "must be in (0, 1]")],
    "generalized_negative_binomial": lambda p: [("mu", _nonneg, "must be >= 0"), ("alpha", _nonneg, "must be >= 0")],
}

# name -> (scalar attribute schema, sampler, _sample_* input names)
DISTS = {
    "uniform": ({"low": P.Float(0.0), "high": P.Float(1.0)}, _uniform, ("low", "high")),
    "normal": ({"loc": P.Float(0.0), "scale": P.Float(1.0)}, _normal, ("mu", "sigma")),
    "gamma": ({"alpha": P.Float(1.0), "beta": P.Float(1.0)}, _gamma, ("alpha", "beta")),
    "exponential": ({"lam": P.Float(1.0)}, _exponential, ("lam",)),
    "poisson": ({"lam": P.Float(1.0)}, _poisson, ("lam",)),
    "negative_binomial": ({"k": P.Int(1), "p": P.Float(1.0)}, _negative_binomial, ("k", "p")),
    "generalized_negative_binomial": ({"mu": P.Float(1.0), "alpha": P.Float(1.0)}, _gen_negative_binomial,
                                      ("mu", "alpha")),
}


def _compute_dtype(dtype):
    return "float64" if dtype == "float64" else "float32"


def _sampling_kernel(out, key, stream, n_param_axes, args_at, sampler):
    """``out[i] = sampler(stream of element i, args at the parameter index of i)``."""
    ct = _compute_dtype(out.dtype)

    def body(*i):
        s = Stream(key, stream, flat_index(i, out.shape))
        return E.cast(sampler(s, args_at(i[:n_param_axes]), ct), out.dtype)
    return [compute(out, body)]


def _register_dist(name, schema, sampler, sample_inputs):
    attrs = list(schema)
    opname = "_random_" + name

    def rshape(params, ins, outs):
        _check(opname, params, RULES[name](params))
        shape = tuple(params["shape"])
        return [], [unify(outs[0], shape) if shape else outs[0]]

    def rtype(params, ins, outs):
        return [], [unify_type(outs[0], _out_float_dtype(opname, params))]

    def rlower(params, ins, outs):
        key, stream = rng_inputs(params, ins, 0)
        values = [params[a] for a in attrs]
        return _sampling_kernel(outs[0], key, stream, 0, lambda i: values, sampler)

    aliases = ("random_" + name,) + ((name,) if name in ("uniform", "normal") else ())
    register(OpDef(opname, kind="opaque", inputs=(), schema=dict(schema, **COMMON), shape=rshape, dtype=rtype,
                   lower=rlower, random=True, aliases=aliases, hint=opname.lower(),
                   doc="Samples of the %s distribution with %s given as numbers; output shape from shape=."
                   % (name, ", ".join(attrs))))

    like = opname + "_like"

    def lshape(params, ins, outs):
        _check(like, params, RULES[name](params))
        s = unify(ins[0], outs[0])
        return [s], [s]

    def llower(params, ins, outs):
        key, stream = rng_inputs(params, ins, 1)
        values = [params[a] for a in attrs]
        return _sampling_kernel(outs[0], key, stream, 0, lambda i: values, sampler)

    def ltype(params, ins, outs):
        t = unify_type(ins[0], outs[0])
        if t is not None and t not in FLOAT_DTYPES:
            raise InferError("%s samples floating-point values; data has dtype %s" % (like, t))
        return [t], [t]

    register(OpDef(like, kind="opaque", inputs=("data",), schema=dict(schema), shape=lshape, dtype=ltype,
                   lower=llower, random=True, gradient=lambda b, node, ogs: [b.zeros_like(node.inputs[0])],
                   doc="Samples of the %s distribution shaped like data (its dtype too)." % name))

    sname = "_sample_" + name

    def sshape(params, ins, outs):
        p = None
        for x in ins:
            p = unify(p, x)
        out = outs[0]
        if p is not None and all(d > 0 for d in p):
            out = unify(out, tuple(p) + tuple(params["shape"]))
        elif out is not None:
            extra = len(params["shape"])
            p = unify(p, tuple(out[:len(out) - extra]))
        return [p] * len(ins), [out]

    def stype(params, ins, outs):
        t = None
        for x in ins:
            t = unify_type(t, x)
        if params.get("dtype"):
            out = _out_float_dtype(sname, params)
        elif t is not None:
            out = t if t in FLOAT_DTYPES else "float32"
        else:
            out = outs[0]
        return [t] * len(ins), [unify_type(outs[0], out)]

    def slower(params, ins, outs):
        n = len(sample_inputs)
        key, stream = rng_inputs(params, ins, n)
        bufs = ins[:n]
        nparam = bufs[0].ndim
        return _sampling_kernel(outs[0], key, stream, nparam, lambda i: [b.load(list(i)) for b in bufs], sampler)

    register(OpDef(sname, kind="opaque", inputs=sample_inputs, schema={"shape": P.Tuple(()), "dtype": P.DType(None)},
                   shape=sshape, dtype=stype, lower=slower, random=True, aliases=("sample_" + name,),
                   gradient=lambda b, node, ogs: [b.zeros_like(e) for e in node.inputs],
                   doc="Samples of the %s distribution, one set of shape= per parameter element "
                   "(output shape = parameter shape + shape)." % name))


for _name, (_schema, _sampler, _inputs) in DISTS.items():
    _register_dist(_name, _schema, _sampler, _inputs)


# ---- randint ----
def _randint_rounds(n, space):
    """Candidate rounds for a range of ``n`` values drawn by rejection from ``space`` values."""
    reject = (space % n) / space
    if reject == 0:
        return 1
    return max(1, math.ceil(math.log(EXHAUST) / math.log(reject)))


def _randint_shape(params, ins, outs):
    low, high = params["low"], params["high"]
    if not low < high:
        raise InferError("invalid parameter low=%r for _random_randint: must be less than high=%r" % (low, high))
    if high - low >= 2 ** 63:
        raise InferError("_random_randint: high - low = %d needs more than 63 bits" % (high - low))
    shape = tuple(params["shape"])
    return [], [unify(outs[0], shape) if shape else outs[0]]


def _randint_type(params, ins, outs):
    t = params.get("dtype") or "int32"
    if t not in ("int32", "int64"):
        raise InferError("dtype=%s is not supported by _random_randint (int32 or int64)" % t)
    if t == "int32" and not (-2 ** 31 <= params["low"] and params["high"] <= 2 ** 31):
        raise InferError("_random_randint: [%d, %d) does not fit int32" % (params["low"], params["high"]))
    return [], [unify_type(outs[0], t)]


def _randint_lower(params, ins, outs):
    key, stream = rng_inputs(params, ins, 0)
    out = outs[0]
    low, n = int(params["low"]), int(params["high"]) - int(params["low"])
    wide = n > 2 ** 32
    space = 2 ** 63 if wide else 2 ** 32
    limit = space - space % n  # candidates below it map uniformly onto [0, n)
    rounds = _randint_rounds(n, space)

    def cand(s, r):
        if wide:  # one 63-bit candidate per block
            blk = s.block(r)
            return _bor(_shl(blk[0], 31), _lshr(blk[1], 1))
        blk = s.block(E.Call("lshr", (r, _i(2))) if isinstance(r, E.Expr) else r // 4)
        w = r if not isinstance(r, E.Expr) else _band(r, 3)
        if isinstance(w, int):
            return blk[w]
        return E.select(E.cmp("eq", w, _i(0)), blk[0], E.select(E.cmp("eq", w, _i(1)), blk[1],
                        E.select(E.cmp("eq", w, _i(2)), blk[2], blk[3])))

    def body(*i):
        s = Stream(key, stream, flat_index(i, out.shape))
        if rounds == 1:
            v = cand(s, 0)
        else:
            best = _first_accepted(rounds, lambda r: E.cmp("lt", cand(s, r), _i(limit)))
            v = cand(s, best)
        return E.cast(_i(low) + v % _i(n), out.dtype)
    return [compute(out, body)]


register(OpDef("_random_randint", kind="opaque", inputs=(), random=True, aliases=("random_randint",),
               schema={"low": P.Int(), "high": P.Int(), "shape": P.Tuple(()), "ctx": P.Str(""),
                       "dtype": P.DType(None)},
               shape=_randint_shape, dtype=_randint_type, lower=_randint_lower,
               doc="Uniform integers in [low, high) (int32 by default, or int64)."))


# ---- multinomial ----
MULTINOMIAL_DTYPES = ("uint8", "int32", "float16", "float32", "float64")


def _mn_outputs(params):
    return (2 if params["get_prob"] else 1) + 2  # + two hidden scratch rows of the running sums


def _mn_visible(params):
    return 2 if params["get_prob"] else 1


def _mn_shape(params, ins, outs):
    data = ins[0]
    if data is None or not all(d > 0 for d in data):
        return [data], list(outs)
    if len(data) < 1:
        raise InferError("data must have at least one dimension")
    out = tuple(data[:-1]) + tuple(params["shape"])
    vis = [unify(outs[k], out) for k in range(_mn_visible(params))]
    return [data], vis + [tuple(data), tuple(data)]


def _mn_type(params, ins, outs):
    t = ins[0]
    if t is not None and t not in FLOAT_DTYPES:
        raise InferError("_sample_multinomial needs floating-point probabilities, got %s" % t)
    dt = params["dtype"] or "int32"
    if dt not in MULTINOMIAL_DTYPES:
        raise InferError("dtype=%s is not supported by _sample_multinomial (%s)" % (dt, ", ".join(MULTINOMIAL_DTYPES)))
    res = [dt] + ([t] if params["get_prob"] else [])
    return [t], res + ["float64", "float64"]


def _mn_lower(params, ins, outs):
    """Running sums per row by a log-step (Hillis-Steele) scan over two scratch buffers, then
    each sample binary-searches its row: the first category whose running sum exceeds u
    (the last category when none does, as MXNet)."""
    data = ins[0]
    key, stream = rng_inputs(params, ins, 1)
    nvis = _mn_visible(params)
    out = outs[0]
    bufs = outs[nvis:nvis + 2]
    k = data.shape[-1]
    lead = data.ndim - 1
    stages = [compute(bufs[0], lambda *i: E.cast(data.load(i), "float64"))]
    src, step = 0, 1
    while step < k:
        a, dst = bufs[src], bufs[1 - src]

        def scan(*i, a=a, step=step):
            j = i[-1]
            prev = a.load(list(i[:-1]) + [E.maximum(j - _i(step), _i(0))])
            return a.load(i) + E.select(E.cmp("ge", j, _i(step)), prev, _f(0.0))
        stages.append(compute(dst, scan))
        src, step = 1 - src, step * 2
    cdf = bufs[src]

    def position(i):
        s = Stream(key, stream, flat_index(i, out.shape))
        u = uniform01(s, "float64")
        row = list(i[:lead])
        pos, step = _i(0), 1
        while step * 2 <= k - 1:
            step *= 2
        while step >= 1:  # pos = #{j < k - 1: cdf[j] <= u}
            probe = pos + _i(step)
            at = E.minimum(probe - _i(1), _i(max(k - 2, 0)))
            take = E.Call("and", (E.cmp("le", probe, _i(k - 1)), E.cmp("le", cdf.load(row + [at]), u)))
            pos = E.select(take, probe, pos)
            step //= 2
        return pos, row

    stages.append(compute(out, lambda *i: E.cast(position(i)[0], out.dtype)))
    if nvis == 2:
        def logp(*i):
            pos, row = position(i)
            return E.call("log", data.load(row + [pos]))
        stages.append(compute(outs[1], logp))
    return stages


def _mn_grad(b, node, ogs):
    if node.params["get_prob"]:
        raise NotImplementedError("the gradient of _sample_multinomial's log-probabilities (get_prob=True)")
    return [b.zeros_like(node.inputs[0])]


register(OpDef("_sample_multinomial", kind="opaque", inputs=("data",), random=True, aliases=("sample_multinomial",),
               schema={"shape": P.Tuple(()), "get_prob": P.Bool(False), "dtype": P.DType("int32")},
               outputs=_mn_outputs, visible=_mn_visible, shape=_mn_shape, dtype=_mn_type, lower=_mn_lower,
               gradient=_mn_grad,
               doc="Category indices drawn from each row of probabilities (last axis); get_prob=True also "
                   "returns the log-probability of each drawn sample."))


# ---- shuffle: a composite over a random key per row ----
def _shuffle_expand(b, inputs, params):
    from . import registry
    if not registry.exists("argsort"):
        raise NotImplementedError("_shuffle needs the argsort operator (compiler/ops/sort.py)")
    x = inputs[0]
    keys = b.op("_random_uniform_like", b.op("_shuffle_keys_like", x), low=0.0, high=1.0)
    order = b.op("argsort", keys, axis=0, dtype="int64")
    return [b.op("take", x, order, axis=0)]


def _keys_like_shape(params, ins, outs):
    data = ins[0]
    if data is None:
        return [None], [outs[0]]
    if len(data) < 1:
        raise InferError("shuffle needs at least one dimension")
    return [data], [unify(outs[0], (data[0],))]


register(OpDef("_shuffle_keys_like", kind="injective", inputs=("data",), shape=_keys_like_shape,
               dtype=lambda params, ins, outs: ([ins[0]], ["float64"]),
               lower=lambda params, ins, outs: [compute(outs[0], lambda i: _f(0.0))],
               gradient=lambda b, node, ogs: [b.zeros_like(node.inputs[0])],
               doc="A float64 vector with one element per row of data (the shape of shuffle's sort keys)."))
register(OpDef("_shuffle", kind="composite", inputs=("data",), aliases=("shuffle",), random=True,
               shape=lambda params, ins, outs: ([unify(ins[0], outs[0])] * 1, [unify(ins[0], outs[0])]),
               expand=_shuffle_expand,
               doc="A random permutation of data along its first axis."))
