"""Data-parallel training of an MLP with the ``dist_sync`` KVStore over MPI.

Each worker draws its own shard of a synthetic classification set (ten Gaussian
clusters in 64 dimensions), computes gradients on its batch, and the Trainer's
``dist_sync`` store sums them over all workers (MPI allreduce) before the same SGD
update is applied on every worker, so all replicas stay identical. This is plain
MXNet 1.x Gluon code; only the launch line is kiln's:

    python -m kiln.launch -n 2 python examples/dist_train.py [--steps 100] [--batch-size 64]

(``pip install 'kiln[dist]'`` installs MPI and mpi4py.) Run without the launcher it
trains as a single worker.
"""
import argparse
import logging
import time

import numpy as np

import kiln as mx
from kiln import autograd, gluon
from kiln.gluon import nn

log = logging.getLogger("dist_train")


def make_data(n, seed, dim=64, classes=10):
    """``n`` points around ten fixed cluster centres (the centres are the same on every worker)."""
    centres = np.random.RandomState(0).randn(classes, dim).astype(np.float32) * 0.3
    rng = np.random.RandomState(seed)
    y = rng.randint(0, classes, size=n)
    x = centres[y] + rng.randn(n, dim).astype(np.float32)
    return x, y.astype(np.float32)


def build_net():
    net = nn.HybridSequential()
    net.add(nn.Dense(128, activation="relu"), nn.Dense(64, activation="relu"), nn.Dense(10))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    return net


def train(steps=100, batch_size=64, kvstore="dist_sync", lr=0.1):
    """Train; returns a dict with the first/last losses, throughput and a parameter checksum."""
    kv = mx.kv.create(kvstore) if kvstore else None
    rank, workers = (kv.rank, kv.num_workers) if kv else (0, 1)
    mx.random.seed(42)  # same start on every worker (the Trainer also broadcasts rank 0's weights)
    net = build_net()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr, "momentum": 0.9}, kvstore=kv)
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    x, y = make_data(steps * batch_size, seed=1 + rank)  # this worker's shard
    losses = []
    start = None
    for s in range(steps):
        if s == 1:
            start = time.perf_counter()  # step 0 includes compiling and the initial broadcast
        xb = mx.nd.array(x[s * batch_size:(s + 1) * batch_size])
        yb = mx.nd.array(y[s * batch_size:(s + 1) * batch_size])
        with autograd.record():
            loss = loss_fn(net(xb), yb)
        loss.backward()
        trainer.step(batch_size * workers)  # the gradient is summed over all workers' samples
        losses.append(float(loss.mean().asscalar()))
    elapsed = time.perf_counter() - start if start is not None else float("nan")
    checksum = float(sum(float(p.data().asnumpy().astype(np.float64).sum())
                         for p in net.collect_params().values()))
    return {"rank": rank, "workers": workers, "first_loss": losses[0], "last_loss": float(np.mean(losses[-5:])),
            "samples_per_s": (steps - 1) * batch_size * workers / elapsed if steps > 1 else float("nan"),
            "checksum": checksum}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64, help="per worker")
    parser.add_argument("--kvstore", default="dist_sync")
    parser.add_argument("--lr", type=float, default=0.1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    r = train(args.steps, args.batch_size, args.kvstore, args.lr)
    log.info("rank %d/%d: loss %.4f -> %.4f, %.0f samples/s (all workers), parameter checksum %.6f",
             r["rank"], r["workers"], r["first_loss"], r["last_loss"], r["samples_per_s"], r["checksum"])


if __name__ == "__main__":
    main()
