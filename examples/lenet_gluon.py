"""Train a LeNet with Gluon, hybridized, on a synthetic image set it can learn.

Each 28x28 image holds one of ten stroke patterns (bars, crosses, boxes...)
at a random offset, with noise. The network, loss and Trainer are MXNet 1.x
Gluon code; ``hybridize()`` compiles the network into one native program.

    python examples/lenet_gluon.py [--epochs 6]
"""
import argparse
import logging
import time

import numpy as np

import kiln as mx
from kiln import autograd, gluon
from kiln.gluon import nn

log = logging.getLogger("lenet_gluon")


def _pattern(k):
    p = np.zeros((12, 12), dtype=np.float32)
    if k == 0:
        p[5:7, :] = 1            # horizontal bar
    elif k == 1:
        p[:, 5:7] = 1            # vertical bar
    elif k == 2:
        p[5:7, :] = p[:, 5:7] = 1  # cross
    elif k == 3:
        np.fill_diagonal(p, 1)   # diagonal
    elif k == 4:
        np.fill_diagonal(p[:, ::-1], 1)  # anti-diagonal
    elif k == 5:
        p[0, :] = p[-1, :] = p[:, 0] = p[:, -1] = 1  # box
    elif k == 6:
        p[3:9, 3:9] = 1          # filled square
    elif k == 7:
        p[::3, :] = 1            # stripes
    elif k == 8:
        p[:, ::3] = 1            # columns
    else:
        p[::2, ::2] = 1          # dots
    return p


def make_data(n, rng):
    labels = rng.randint(0, 10, n)
    images = rng.normal(0, 0.3, (n, 1, 28, 28)).astype(np.float32)
    for i, k in enumerate(labels):
        r, c = rng.randint(0, 17, 2)
        images[i, 0, r:r + 12, c:c + 12] += _pattern(k)
    return images, labels.astype(np.float32)


def build():
    net = nn.HybridSequential()
    net.add(nn.Conv2D(20, 5, activation="relu"), nn.MaxPool2D(2),
            nn.Conv2D(50, 5, activation="relu"), nn.MaxPool2D(2),
            nn.Flatten(), nn.Dense(128, activation="relu"), nn.Dense(10))
    return net


def train(epochs=6, n=2048, batch=64, lr=0.05, seed=0):
    """Returns the training accuracy of each epoch."""
    rng = np.random.RandomState(seed)
    mx.random.seed(seed)
    x, y = make_data(n, rng)
    net = build()
    net.initialize(mx.init.Xavier())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr, "momentum": 0.9})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    accuracies = []
    for epoch in range(epochs):
        order = rng.permutation(n)
        correct = 0
        t0 = time.perf_counter()
        for start in range(0, n - batch + 1, batch):
            idx = order[start:start + batch]
            data, label = mx.nd.array(x[idx]), mx.nd.array(y[idx])
            with autograd.record():
                out = net(data)
                loss = loss_fn(out, label)
            loss.backward()
            trainer.step(batch)
            correct += int((out.argmax(axis=1) == label).sum().asscalar())
        accuracies.append(correct / (n - n % batch))
        log.info("epoch %d: training accuracy %.3f (%.1fs)", epoch, accuracies[-1], time.perf_counter() - t0)
    return accuracies


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train(epochs=args.epochs)


if __name__ == "__main__":
    main()
