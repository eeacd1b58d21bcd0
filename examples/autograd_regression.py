"""Fit a small nonlinear regression with NDArray operations and autograd.

Everything is imperative, as in MXNet's autograd tutorial: data from
``mx.nd.random``, a two-layer network written with ``nd`` operators, Dropout
active while recording, gradients from ``loss.backward()`` and an SGD update
written with in-place operators. Each operator runs a compiled kernel.

    python examples/autograd_regression.py [--steps 200]
"""
import argparse
import logging
import time

import kiln as mx
from kiln import autograd, nd

log = logging.getLogger("autograd_regression")


def make_data(n):
    x = nd.random.uniform(-2, 2, shape=(n, 1))
    y = nd.sin(x * 1.5) + 0.05 * nd.random.normal(shape=(n, 1))
    return x, y


def train(steps=200, n=256, hidden=32, lr=0.05, seed=0):
    """Returns the mean squared error after each step."""
    mx.random.seed(seed)
    x, y = make_data(n)
    params = [nd.random.normal(0, 0.5, shape=(hidden, 1)), nd.zeros((hidden,)),
              nd.random.normal(0, 0.2, shape=(1, hidden)), nd.zeros((1,))]
    for p in params:
        p.attach_grad()
    w1, b1, w2, b2 = params
    losses = []
    for _ in range(steps):
        with autograd.record():
            h = nd.Dropout(nd.tanh(nd.FullyConnected(x, w1, b1, num_hidden=hidden)), p=0.1)
            pred = nd.FullyConnected(h, w2, b2, num_hidden=1)
            loss = ((pred - y) ** 2).mean()
        loss.backward()
        for p in params:
            p -= lr * p.grad
        losses.append(float(loss.asscalar()))
    return losses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    losses = train(steps=args.steps)
    for step in range(0, len(losses), max(1, len(losses) // 10)):
        log.info("step %4d  mse %.4f", step, losses[step])
    log.info("final mse %.4f (%.2fs)", losses[-1], time.perf_counter() - t0)


if __name__ == "__main__":
    main()
