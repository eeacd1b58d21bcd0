"""One worker of the tests/dist jobs (started by mpirun through kiln.launch).

    python dist_worker.py MODE OUTDIR

Each rank writes OUTDIR/<mode>.<rank>.npz (numpy arrays, no pickles) that the test
compares; failures surface as a non-zero exit status and a message on stderr.
"""
import os
import sys
import time

import numpy as np

import kiln as mx
from kiln import autograd, gluon
from kiln.gluon import nn


def _mlp(seed):
    mx.random.seed(seed)
    net = nn.HybridSequential()
    net.add(nn.Dense(16, activation="relu", in_units=8), nn.Dense(4, in_units=16))
    net.initialize(mx.init.Xavier())
    return net


def _data(n=32):
    rng = np.random.RandomState(0)
    x = rng.randn(n, 8).astype(np.float32)
    y = rng.randint(0, 4, size=n).astype(np.float32)
    return x, y


def _train(net, trainer, batches, global_batch):
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for xb, yb in batches:
        with autograd.record():
            loss = loss_fn(net(mx.nd.array(xb)), mx.nd.array(yb))
        loss.backward()
        trainer.step(global_batch)


def _params(net):
    """Values by position (names differ between two nets of one script)."""
    return {"p%d" % i: v.data().asnumpy() for i, v in enumerate(net.collect_params().values())}


def _set_params(net, values):
    for i, p in enumerate(net.collect_params().values()):
        p.set_data(mx.nd.array(values["p%d" % i]))


def sync_mlp(out, steps=4, kvtype="dist_sync"):
    """Rank-split batches with dist_sync; rank 0 also trains the reference on whole batches."""
    kv = mx.kv.create(kvtype)
    rank, nw = kv.rank, kv.num_workers
    x, y = _data()
    per = len(x) // (steps * nw)
    # MXNet's Trainer broadcasts rank 0's weights at its first step, after the first
    # backward, so every rank starts from the same seed; init's broadcast is checked apart
    net = _mlp(seed=100)
    init = _params(net)
    probe = mx.nd.zeros((3,))
    kv.init(1000, mx.nd.ones((3,)) * (rank + 1))
    kv.pull(1000, out=probe)
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5, "momentum": 0.9}, kvstore=kv)
    batches = []
    for s in range(steps):
        lo = s * per * nw
        batches.append((x[lo + rank * per: lo + (rank + 1) * per], y[lo + rank * per: lo + (rank + 1) * per]))
    _train(net, trainer, batches, per * nw)
    result = {"dist." + k: v for k, v in _params(net).items()}
    result["probe"] = probe.asnumpy()
    if rank == 0:
        ref = _mlp(seed=100)
        _set_params(ref, init)
        ref_trainer = gluon.Trainer(ref.collect_params(), "sgd", {"learning_rate": 0.5, "momentum": 0.9},
                                    kvstore=None)
        _train(ref, ref_trainer, [(x[s * per * nw:(s + 1) * per * nw], y[s * per * nw:(s + 1) * per * nw])
                                  for s in range(steps)], per * nw)
        result.update({"ref." + k: v for k, v in _params(ref).items()})
    kv._barrier()
    np.savez(os.path.join(out, "sync_mlp.%d.npz" % rank), **result)


def dead(out):
    """Rank 1 leaves before pushing; rank 0 must fail with the timeout error."""
    kv = mx.kv.create("dist_sync")
    kv.init(3, mx.nd.ones((4,)))
    if kv.rank == 1:
        return
    t0 = time.monotonic()
    try:
        kv.push(3, mx.nd.ones((4,)))
    except mx.base.MXNetError as err:
        sys.stderr.write("RANK0-ERROR after %.1f s: %s\n" % (time.monotonic() - t0, err))
        sys.exit(7)
    sys.exit(0)


def mismatch(out):
    """The ranks push different keys (and shapes): a clear error on both, naming them."""
    kv = mx.kv.create("dist_sync")
    kv.init("w", mx.nd.ones((4,)))
    kv.init("v", mx.nd.ones((2, 3)))
    try:
        kv.push("w" if kv.rank == 0 else "v", mx.nd.ones((4,)) if kv.rank == 0 else mx.nd.ones((2, 3)))
    except mx.base.MXNetError as err:
        sys.stderr.write("RANK%d-ERROR: %s\n" % (kv.rank, err))
        sys.exit(7)


def collectives(out):
    import kiln.distributed as hvd
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    res = {"rank": np.array(rank), "size": np.array(size), "local_rank": np.array(hvd.local_rank()),
           "local_size": np.array(hvd.local_size())}
    t = mx.nd.array(np.arange(6, dtype=np.float32).reshape(2, 3) * (rank + 1))
    res["allreduce_avg"] = hvd.allreduce(t, average=True, name="t").asnumpy()
    res["allreduce_sum"] = hvd.allreduce(t, average=False, name="t").asnumpy()
    u = t.copy()
    hvd.allreduce_(u, average=False, name="u")
    res["allreduce_inplace"] = u.asnumpy()
    g = mx.nd.array(np.full((rank + 1, 2), rank, dtype=np.float32))
    res["allgather"] = hvd.allgather(g, name="g").asnumpy()
    res["broadcast"] = hvd.broadcast(t, root_rank=size - 1, name="b").asnumpy()
    v = t.copy()
    hvd.broadcast_(v, root_rank=0, name="b_")
    res["broadcast_inplace"] = v.asnumpy()
    i32 = hvd.allreduce(mx.nd.array([rank + 1, 2], dtype="int32"), average=False, name="i")
    res["allreduce_int"] = i32.asnumpy()
    # parameters: different init per rank, broadcast makes them rank 0's
    net = _mlp(seed=7 + rank)
    hvd.broadcast_parameters(net.collect_params(), root_rank=0)
    res.update({"bp." + k: v for k, v in _params(net).items()})
    d = {"a": mx.nd.ones((3,)) * (rank + 5)}
    hvd.broadcast_parameters(d, root_rank=1 % size)
    res["bp_dict"] = d["a"].asnumpy()
    # DistributedTrainer == single process on the combined batch (Horovod averages)
    x, y = _data(16)
    per = len(x) // size
    net = _mlp(seed=3)
    hvd.broadcast_parameters(net.collect_params())
    init = _params(net)
    trainer = hvd.DistributedTrainer(net.collect_params(), "sgd", {"learning_rate": 0.5})
    _train(net, trainer, [(x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per])] * 2, per)
    res.update({"dt." + k: v for k, v in _params(net).items()})
    ref = _mlp(seed=3)
    _set_params(ref, init)
    _train(ref, gluon.Trainer(ref.collect_params(), "sgd", {"learning_rate": 0.5}, kvstore=None),
           [(x[:per * size], y[:per * size])] * 2, per * size)
    res.update({"ref." + k: v for k, v in _params(ref).items()})
    # the horovod KVStore with a gluon Trainer (sum of gradients, step by the global batch)
    net = _mlp(seed=11 + rank)
    tr = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.5}, kvstore=mx.kv.create("horovod"))
    _train(net, tr, [(x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per])], per * size)
    res.update({"hk." + k: v for k, v in _params(net).items()})
    np.savez(os.path.join(out, "collectives.%d.npz" % rank), **res)


def async_store(out):
    """dist_async: every rank pushes gradients of key 0; rank 0 applies them with SGD."""
    kv = mx.kv.create("dist_async")
    rank, nw = kv.rank, kv.num_workers
    kv.init(0, mx.nd.ones((5,)) * (1 + rank))  # rank 0's value wins
    # momentum makes the result depend on the arrival order: only with one worker
    kv.set_optimizer(mx.optimizer.SGD(learning_rate=0.1, momentum=0.5 if nw == 1 else 0.0, rescale_grad=0.5))
    pushes = [np.full((5,), rank + 1 + s, dtype=np.float32) for s in range(3)]
    for g in pushes:
        kv.push(0, mx.nd.array(g))
    out_arr = mx.nd.zeros((5,))
    kv.pull(0, out=out_arr)
    kv._barrier()  # every push has been applied
    final = mx.nd.zeros((5,))
    kv.pull(0, out=final)
    np.savez(os.path.join(out, "async.%d.npz" % rank), mine=out_arr.asnumpy(), final=final.asnumpy(),
             pushes=np.stack(pushes), nw=np.array(nw))
    kv.close()


if __name__ == "__main__":
    mode, outdir = sys.argv[1], sys.argv[2]
    {"sync_mlp": sync_mlp, "dead": dead, "mismatch": mismatch, "collectives": collectives,
     "async": async_store}[mode](outdir)
