"""``mx.random``: the generator state and MXNet's sampling functions.

Sampling kernels are pure functions of a key ``[seed, counter]`` (see
``compiler/ops/random.py``): this module owns the seed and hands out a fresh key,
counter incremented, for every program run that samples (``next_key``). Seeding
resets the counter, so the same seed gives the same numbers on every run, whatever
the thread count. The sampling functions are those of ``mx.nd.random``.
"""
from __future__ import annotations

import threading

import numpy as np

from .base import MXNetError
from .ndarray.random import (exponential, gamma, generalized_negative_binomial, multinomial,  # noqa: F401
                             negative_binomial, normal, poisson, randint, randn, shuffle, uniform)

__all__ = ["seed", "next_key", "get_state", "uniform", "normal", "randn", "randint", "exponential", "gamma",
           "poisson", "negative_binomial", "generalized_negative_binomial", "multinomial", "shuffle"]

DEFAULT_SEED = 0  # MXNet starts from a fixed seed too: a fresh process repeats its numbers

_lock = threading.Lock()
_state = {"seed": DEFAULT_SEED, "counter": 0}


def _as_int64(value):
    """A Python int taken modulo 2**64, as the signed int64 the key array stores."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def seed(seed_state, ctx="all"):
    """Seed the generator; ``ctx`` is accepted for MXNet compatibility ('all' or a context:
    kiln has one generator for its one device kind)."""
    if isinstance(seed_state, bool) or not isinstance(seed_state, (int, np.integer)):
        raise MXNetError("random.seed: seed_state must be an int, got %r" % (seed_state,))
    if not (ctx == "all" or hasattr(ctx, "device_type")):
        raise MXNetError("random.seed: ctx must be 'all' or a Context, got %r" % (ctx,))
    with _lock:
        _state["seed"] = _as_int64(int(seed_state))
        _state["counter"] = 0


def next_key():
    """A fresh ``[seed, counter]`` int64 array for one program run (counter incremented)."""
    with _lock:
        key = np.array([_state["seed"], _state["counter"]], dtype=np.int64)
        _state["counter"] += 1
    return key


def get_state():
    """(seed, counter): where the generator stands (tests, checkpoints)."""
    with _lock:
        return _state["seed"], _state["counter"]
