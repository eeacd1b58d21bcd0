"""Random operators and the Philox generator (compiler/ops/random.py), through compile_program.

Statistical checks use fixed keys, so they are deterministic; their tolerances are
derived from the sample size (5 standard errors for moments, the 0.1% critical value
of the Kolmogorov-Smirnov distance), so a correct sampler fails one only for about one
key in a thousand (key (7, 3) is such a key for the float64 normal KS test, whose
sqrt(n)*D over 30 other keys averages 0.89, as the Kolmogorov distribution's 0.87).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from kiln.base import MXNetError
from kiln.compiler.graph import Entry, Node
from kiln.compiler.ops import random as R
from kiln.compiler.ops import registry
from kiln.compiler.pipeline import compile_program
from kiln.runtime.program import LoadedProgram

N = 40000


def run(opname, attrs, inputs=(), key=(7, 3), name="n"):
    """Compile a single random node and run it once with ``key``; returns numpy outputs."""
    op = registry.get(opname)
    names = ["in%d" % i for i in range(len(inputs))]
    node = Node(op, name, op.format_attrs(attrs, name), [Entry(Node(None, n)) for n in names])
    heads = [Entry(node, i) for i in range(node.num_visible_outputs)]
    spec, info = compile_program(heads, {n: a.shape for n, a in zip(names, inputs)},
                                 {n: a.dtype.name for n, a in zip(names, inputs)})
    prog = LoadedProgram(spec)
    outs = [np.empty(s, t) for s, t in zip(info["out_shapes"], info["out_dtypes"])]
    for n, a in zip(names, inputs):
        if prog.has_slot(n):
            prog.bind(n, a)
    for n, o in zip(info["outputs"], outs):
        prog.bind(n, o)
    assert info["rng_key"] == R.KEY_SLOT
    prog.bind(info["rng_key"], np.array(key, np.int64))
    prog.run("forward")
    return outs


def check_moments(x, mean, var, axis=None):
    """Sample mean within 5 standard errors; sample variance within 5 of its standard errors
    (using the fourth moment estimated from the sample)."""
    x = np.asarray(x, np.float64)
    n = x.size if axis is None else x.shape[axis]
    m = x.mean(axis=axis)
    assert np.all(np.abs(m - mean) <= 5 * np.sqrt(var / n)), (m, mean)
    c = x - (m if axis is None else np.expand_dims(m, axis))
    v = (c ** 2).mean(axis=axis)
    m4 = (c ** 4).mean(axis=axis)
    assert np.all(np.abs(v - var) <= 5 * np.sqrt(np.maximum(m4 - v ** 2, 1e-12) / n)), (v, var)


def ks_distance(x, cdf):
    x = np.sort(np.asarray(x, np.float64))
    n = x.size
    f = cdf(x)
    return max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n))


def check_ks(x, cdf):
    assert ks_distance(x, cdf) < 1.95 / math.sqrt(np.size(x))  # 0.1% critical value


# ---- the generator ----
def test_philox_known_answers():
    """Random123's published test vectors for Philox4x32-10."""
    cases = [((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
             ((MASK,) * 4, (MASK, MASK), (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
             ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
              (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1))]
    for ctr, key, want in cases:
        got = R.philox_numpy([[c] for c in ctr], [[k] for k in key])
        assert [int(w[0]) for w in got] == list(want)


MASK = 0xFFFFFFFF


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_bits_match_the_numpy_generator(dtype):
    """The compiled Philox (int64 IR, bit operations in LLVM) equals the numpy reference bit for bit."""
    n = 1000
    out = run("_random_uniform", {"shape": (n,), "dtype": dtype}, key=(-12345678901, 2 ** 33 + 5))[0]
    w = R.numpy_words(-12345678901, 2 ** 33 + 5, 0, n)
    if dtype == "float32":
        want = (w[0] >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)
    else:
        bits = ((w[0] >> np.uint64(5)) << np.uint64(26)) | (w[1] >> np.uint64(6))
        want = bits.astype(np.float64) * 2.0 ** -53
    np.testing.assert_array_equal(out, want)


def test_same_key_same_numbers_and_keys_differ():
    a = run("_random_normal", {"shape": (64,)}, key=(1, 0))[0]
    b = run("_random_normal", {"shape": (64,)}, key=(1, 0))[0]
    c = run("_random_normal", {"shape": (64,)}, key=(1, 1))[0]
    d = run("_random_normal", {"shape": (64,)}, key=(2, 0))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d) and not np.array_equal(c, d)


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    outs = []
    for threads in ("1", "2"):
        monkeypatch.setenv("KILN_NUM_THREADS", threads)
        outs.append(run("_random_gamma", {"shape": (300, 200), "alpha": 0.7}, key=(5, 9)))
        outs.append(run("_sample_poisson", {"shape": (50,)}, [np.linspace(0, 30, 600).astype(np.float32)],
                        key=(5, 9)))
    for x, y in zip(outs[:2], outs[2:]):
        np.testing.assert_array_equal(x[0], y[0])


def test_two_random_nodes_in_one_graph_get_different_streams():
    import kiln as mx
    a = mx.sym.random.uniform(shape=(50,))
    b = mx.sym.random.uniform(shape=(50,))
    spec, info = compile_program((a + b)._outputs + a._outputs + b._outputs, {}, {})
    prog = LoadedProgram(spec)
    outs = [np.empty(s, t) for s, t in zip(info["out_shapes"], info["out_dtypes"])]
    for n, o in zip(info["outputs"], outs):
        prog.bind(n, o)
    prog.bind(info["rng_key"], np.array([3, 0], np.int64))
    prog.run("forward")
    assert not np.array_equal(outs[1], outs[2])
    np.testing.assert_allclose(outs[0], outs[1] + outs[2], rtol=1e-6)
    assert "__rng_key__" not in (a + b).list_arguments()


def test_graph_without_random_nodes_has_no_key():
    import kiln as mx
    x = mx.sym.Variable("x")
    _, info = compile_program((x * 2)._outputs, {"x": (2,)}, {"x": "float32"})
    assert info["rng_key"] is None


# ---- distributions ----
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_ks(dtype):
    x = run("_random_uniform", {"shape": (N,), "low": -2.0, "high": 3.0, "dtype": dtype})[0]
    assert x.dtype == dtype and x.min() >= -2 and x.max() < 3
    check_ks(x, lambda t: (t + 2) / 5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normal_ks(dtype):
    x = run("_random_normal", {"shape": (N,), "loc": 1.5, "scale": 2.0, "dtype": dtype}, key=(11, 0))[0]
    erf = np.vectorize(math.erf)
    check_ks(x, lambda t: 0.5 * (1 + erf((t - 1.5) / (2.0 * math.sqrt(2)))))
    check_moments(x, 1.5, 4.0)


def test_exponential_ks():
    x = run("_random_exponential", {"shape": (N,), "lam": 4.0})[0]
    assert x.min() >= 0
    check_ks(x, lambda t: 1 - np.exp(-4.0 * t))


@pytest.mark.parametrize("alpha,beta", [(0.3, 2.0), (1.0, 1.0), (4.5, 0.5), (200.0, 1.0)])
def test_gamma_moments(alpha, beta):
    x = run("_random_gamma", {"shape": (N,), "alpha": alpha, "beta": beta})[0]
    assert x.min() >= 0
    check_moments(x, alpha * beta, alpha * beta ** 2)


@pytest.mark.parametrize("lam", [0.0, 0.4, 3.5, 9.99, 10.0, 35.0, 1e4])
def test_poisson_moments(lam):
    x = run("_random_poisson", {"shape": (N,), "lam": lam})[0]
    assert np.all(x == np.round(x)) and x.min() >= 0
    if lam == 0:
        assert np.all(x == 0)
    else:
        check_moments(x, lam, lam)


def test_poisson_small_mean_frequencies():
    lam = 2.0
    x = run("_random_poisson", {"shape": (N,), "lam": lam})[0].astype(int)
    freq = np.bincount(x, minlength=8)[:8] / N
    pmf = np.array([math.exp(-lam) * lam ** k / math.factorial(k) for k in range(8)])
    assert np.all(np.abs(freq - pmf) <= 5 * np.sqrt(pmf * (1 - pmf) / N))


def test_sample_poisson_per_parameter_rows():
    """Array means cross both algorithms (binomial split below 10, PTRS above)."""
    lam = np.array([0.0, 0.5, 3.0, 9.9, 10.0, 50.0], np.float32)
    x = run("_sample_poisson", {"shape": (8000,)}, [lam])[0]
    assert x.shape == (6, 8000) and x.dtype == np.float32
    assert np.all(x[0] == 0)
    check_moments(x[1:], lam[1:], lam[1:], axis=1)


def test_sample_gamma_and_normal_per_parameter():
    alpha = np.array([[0.5, 2.0]], np.float64)
    beta = np.array([[1.0, 3.0]], np.float64)
    x = run("_sample_gamma", {"shape": (5000,)}, [alpha, beta])[0]
    assert x.shape == (1, 2, 5000) and x.dtype == np.float64
    check_moments(x[0], (alpha * beta)[0], (alpha * beta ** 2)[0], axis=1)
    mu = np.array([-1.0, 4.0], np.float32)
    sigma = np.array([0.5, 2.0], np.float32)
    y = run("_sample_normal", {"shape": (5000,)}, [mu, sigma])[0]
    check_moments(y, mu, sigma ** 2, axis=1)


def test_negative_binomial_moments():
    k, p = 3, 0.4
    x = run("_random_negative_binomial", {"shape": (N,), "k": k, "p": p})[0]
    check_moments(x, k * (1 - p) / p, k * (1 - p) / p ** 2)
    kk = np.array([2.0, 5.0], np.float32)
    pp = np.array([0.5, 0.8], np.float32)
    y = run("_sample_negative_binomial", {"shape": (8000,)}, [kk, pp])[0]
    check_moments(y, kk * (1 - pp) / pp, kk * (1 - pp) / pp ** 2, axis=1)


def test_generalized_negative_binomial_moments():
    mu, alpha = 4.0, 0.25
    x = run("_random_generalized_negative_binomial", {"shape": (N,), "mu": mu, "alpha": alpha})[0]
    check_moments(x, mu, mu + alpha * mu * mu)
    y = run("_random_generalized_negative_binomial", {"shape": (N,), "mu": mu, "alpha": 0.0})[0]
    check_moments(y, mu, mu)  # alpha = 0 is Poisson
    mus = np.array([2.0, 3.0], np.float32)
    alphas = np.array([0.0, 0.5], np.float32)
    z = run("_sample_generalized_negative_binomial", {"shape": (8000,)}, [mus, alphas])[0]
    check_moments(z, mus, mus + alphas * mus * mus, axis=1)


@pytest.mark.parametrize("low,high,dtype", [(-3, 7, "int32"), (0, 2 ** 31 + 5, "int64"),
                                            (-2 ** 40, 2 ** 40, "int64"), (5, 6, "int32")])
def test_randint_range_and_frequencies(low, high, dtype):
    x = run("_random_randint", {"shape": (N,), "low": low, "high": high, "dtype": dtype})[0]
    assert x.dtype == dtype and x.min() >= low and x.max() < high
    if high - low <= 10:
        freq = np.bincount(x - low, minlength=high - low) / N
        p = 1 / (high - low)
        assert np.all(np.abs(freq - p) <= 5 * math.sqrt(p * (1 - p) / N) + 1e-12)
    else:
        u = (x.astype(np.float64) - low) / (high - low)
        check_ks(u, lambda t: t)


def test_multinomial_frequencies_and_log_prob():
    p = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25], [0.0, 1.0, 0.0]], np.float32)
    idx, logp = run("_sample_multinomial", {"shape": (N,), "get_prob": True}, [p])
    assert idx.shape == (3, N) and idx.dtype == np.int32 and logp.dtype == np.float32
    for row in range(3):
        freq = np.bincount(idx[row], minlength=3) / N
        assert np.all(np.abs(freq - p[row]) <= 5 * np.sqrt(p[row] * (1 - p[row]) / N) + 1e-12)
        np.testing.assert_allclose(logp[row], np.log(p[row][idx[row]]), rtol=1e-6)


def test_multinomial_many_categories_and_dtype():
    k = 37
    p = np.full((k,), 1.0 / k, np.float64)
    idx = run("_sample_multinomial", {"shape": (N,), "dtype": "float32"}, [p])[0]
    assert idx.shape == (N,) and idx.dtype == np.float32
    freq = np.bincount(idx.astype(int), minlength=k) / N
    assert np.all(np.abs(freq - 1 / k) <= 5 * math.sqrt((1 / k) * (1 - 1 / k) / N))


def test_like_operators_take_shape_and_dtype_from_data():
    data = np.zeros((3, 70), np.float64)
    x = run("_random_uniform_like", {"low": 2.0, "high": 4.0}, [data])[0]
    assert x.shape == (3, 70) and x.dtype == np.float64 and x.min() >= 2 and x.max() < 4
    y = run("_random_normal_like", {"loc": 0.0, "scale": 1.0}, [np.zeros((5,), np.float16)])[0]
    assert y.dtype == np.float16


@pytest.mark.parametrize("opname,attrs,match", [
    ("_random_normal", {"scale": -1.0}, "scale=-1.0"),
    ("_random_uniform", {"low": 2.0, "high": 1.0}, "low=2.0"),
    ("_random_gamma", {"alpha": 0.0}, "alpha=0.0"),
    ("_random_exponential", {"lam": -2.0}, "lam=-2.0"),
    ("_random_poisson", {"lam": -0.5}, "lam=-0.5"),
    ("_random_negative_binomial", {"k": 2, "p": 1.5}, "p=1.5"),
    ("_random_generalized_negative_binomial", {"mu": 1.0, "alpha": -1.0}, "alpha=-1.0"),
    ("_random_randint", {"low": 5, "high": 5}, "low=5"),
    ("_random_uniform", {"dtype": "int32"}, "dtype=int32"),
])
def test_invalid_parameters_raise_before_running(opname, attrs, match):
    attrs = dict(attrs, shape=(3,))
    with pytest.raises(MXNetError, match=opname) as err:
        run(opname, attrs)
    assert match in str(err.value)


def test_round_bounds_leave_less_than_1e15():
    """The documented acceptance floors give the documented exhaustion probabilities."""
    assert (1 - 0.9517) ** R.GAMMA_ROUNDS < 5e-16
    assert (1 - 0.7525) ** R.PTRS_ROUNDS < 5e-16
    assert R._randint_rounds(10, 2 ** 32) >= 1
    assert 0.5 ** R._randint_rounds(2 ** 31 + 1, 2 ** 32) < 1e-15
    tail = 1 - sum(math.exp(-10) * 10 ** j / math.factorial(j) for j in range(R.POISSON_K + 1))
    assert tail < 1e-15


def test_shuffle_is_a_permutation_of_rows():
    if not registry.exists("argsort"):
        pytest.fail("argsort is not registered: _shuffle needs it")
    x = np.arange(60, dtype=np.float32).reshape(20, 3)
    y = run("_shuffle", {}, [x])[0]
    assert sorted(y[:, 0].tolist()) == x[:, 0].tolist()
    np.testing.assert_array_equal(y[:, 1:] - y[:, :1], x[:, 1:] - x[:, :1])  # rows stay whole
    assert not np.array_equal(y, x)
