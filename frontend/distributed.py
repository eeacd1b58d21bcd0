"""``kiln.distributed``: Horovod's MXNet API (``horovod.mxnet``) on MPI through mpi4py.

Scripts written for Horovod (``import horovod.mxnet as hvd``) run with
``import kiln.distributed as hvd``: ``init``, ``rank``/``size``/``local_rank``/
``local_size``, ``allreduce(_)``, ``allgather``, ``broadcast(_)``,
``broadcast_parameters`` and ``DistributedTrainer`` (a gluon.Trainer that sums the
gradients over workers and scales them by 1/size, as Horovod does). The ``horovod``
KVStore (MXNet 1.9's ``mx.kv.create('horovod')``) is registered here too.

Every collective is synchronous in the calling thread and issued in program order, so
all workers must call them in the same order; each one first checks that the workers
agree on the tensor's name, shape and dtype and fails with an ``MXNetError`` (never a
hang) after ``KILN_DIST_TIMEOUT`` seconds. Launch with ``python -m kiln.launch -n N``.
"""
from __future__ import annotations

import logging

import numpy as np

from .base import MXNetError
from .ndarray import NDArray
from .kvstore.base import KVStoreBase
from .kvstore import dist as _dist
from .gluon.trainer import Trainer

__all__ = ["init", "shutdown", "is_initialized", "rank", "local_rank", "size", "local_size", "allreduce",
           "allreduce_", "allgather", "broadcast", "broadcast_", "broadcast_parameters", "DistributedTrainer",
           "Horovod"]

_log = logging.getLogger(__name__)

_comm = None
_local = None  # (local_rank, local_size)


def init(comm=None):
    """Start MPI (if needed) and kiln's communicator; safe to call more than once."""
    global _comm, _local
    if _comm is None:
        MPI = _dist.mpi()
        _comm = _dist.Comm(comm if comm is not None else MPI.COMM_WORLD, label="kiln.distributed")
        node = _comm.comm.Split_type(MPI.COMM_TYPE_SHARED, key=_comm.rank)
        _local = (node.Get_rank(), node.Get_size())
        node.Free()


def shutdown():
    """Release kiln's communicator (MPI itself is finalised at exit by mpi4py)."""
    global _comm, _local
    if _comm is not None and not _dist._broken:
        _comm.comm.Free()
    _comm = _local = None


def is_initialized():
    return _comm is not None


def _c():
    if _comm is None:
        raise MXNetError("kiln.distributed is not initialized: call kiln.distributed.init() first")
    return _comm


def rank():
    return _c().rank


def size():
    return _c().size


def local_rank():
    _c()
    return _local[0]


def local_size():
    _c()
    return _local[1]


def _name(name, default):
    return default if name is None else str(name)


def _reduce_np(tensor, average, name):
    c = _c()
    data = np.ascontiguousarray(tensor._read())
    c.check_headers("allreduce", _name(name, "allreduce.noname"), data.shape, data.dtype)
    return c.allreduce(data, "allreduce of %r" % _name(name, "<noname>"), average=average)


def allreduce(tensor, average=True, name=None, priority=0):
    """A new NDArray: the sum (mean with ``average``) of ``tensor`` over all workers."""
    return NDArray(_reduce_np(tensor, average, name), tensor.context)


def allreduce_(tensor, average=True, name=None, priority=0):
    """``allreduce`` written back into ``tensor``; returns it."""
    tensor[:] = _reduce_np(tensor, average, name)
    return tensor


def allgather(tensor, name=None, priority=0):
    """Every worker's ``tensor`` concatenated on axis 0 in rank order (first dims may differ)."""
    c = _c()
    data = np.ascontiguousarray(tensor._read())
    if data.ndim == 0:
        data = data.reshape(1)
    c.check_headers("allgather", _name(name, "allgather.noname"), ("*",) + data.shape[1:], data.dtype)
    return NDArray(c.allgather_rows(data, "allgather of %r" % _name(name, "<noname>")), tensor.context)


def _bcast_np(tensor, root_rank, name):
    c = _c()
    if not 0 <= root_rank < c.size:
        raise MXNetError("broadcast: root_rank %d is not a rank of %d workers" % (root_rank, c.size))
    data = np.array(tensor._read(), copy=True, order="C")
    c.check_headers("broadcast@%d" % root_rank, _name(name, "broadcast.noname"), data.shape, data.dtype)
    return c.bcast(data, root_rank, "broadcast of %r" % _name(name, "<noname>"))


def broadcast(tensor, root_rank, name=None, priority=0):
    """A new NDArray holding ``root_rank``'s ``tensor`` on every worker."""
    return NDArray(_bcast_np(tensor, root_rank, name), tensor.context)


def broadcast_(tensor, root_rank, name=None, priority=0):
    """``broadcast`` written back into ``tensor``; returns it."""
    tensor[:] = _bcast_np(tensor, root_rank, name)
    return tensor


def broadcast_parameters(params, root_rank=0, prefix=None):
    """Give every worker ``root_rank``'s values: a gluon ParameterDict (or dict of
    Parameters) or a dict of NDArrays, in sorted-name order on every worker."""
    if not (hasattr(params, "items") and hasattr(params, "keys")):
        raise ValueError("broadcast_parameters takes a ParameterDict or a dict, got %s" % type(params).__name__)
    prefix = prefix or ""
    for name in sorted(params.keys()):
        p = params[name]
        if isinstance(p, NDArray):
            broadcast_(p, root_rank, name=prefix + str(name))
            continue
        if getattr(p, "_data", None) is None:
            raise MXNetError("broadcast_parameters: Parameter %r is not initialized yet (deferred): initialize "
                             "it (or run one forward pass) before broadcasting" % (p.name,))
        arrays = p.list_data()
        value = _bcast_np(arrays[0], root_rank, prefix + str(name))
        for a in arrays:
            a[:] = value


class DistributedTrainer(Trainer):
    """gluon.Trainer whose gradients are summed over workers (allreduce) before the
    update and scaled by 1/size, so ``step(batch_size)`` takes the per-worker batch."""

    def __init__(self, params, optimizer, optimizer_params=None, compression=None, gradient_predivide_factor=1.0,
                 prefix=None):
        if compression is not None:
            raise NotImplementedError("DistributedTrainer: gradient compression is not implemented in kiln")
        if gradient_predivide_factor != 1.0:
            raise NotImplementedError("DistributedTrainer: gradient_predivide_factor is not implemented in kiln")
        init()
        self._prefix = prefix or ""
        super().__init__(params, optimizer, optimizer_params=optimizer_params, kvstore=None)
        self._scale /= size()  # Horovod: the step's rescale_grad averages over workers

    def _allreduce_grads(self):
        if size() == 1:
            return
        for i, param in enumerate(self._params):
            if param.grad_req != "null":
                grads = param.list_grad()
                allreduce_(grads[0], average=False, name=self._prefix + str(i), priority=-i)
                for g in grads[1:]:
                    g[:] = grads[0]


@KVStoreBase.register
class Horovod(KVStoreBase):
    """MXNet 1.9's ``horovod`` store: broadcast and sum over workers; no optimiser."""

    def __init__(self):
        init()

    @property
    def type(self):
        return "horovod"

    @property
    def local_rank(self):
        return local_rank()

    @property
    def rank(self):
        return rank()

    @property
    def num_workers(self):
        return size()

    def broadcast(self, key, value, out, priority=0):
        result = broadcast(value, root_rank=0, name=str(key), priority=priority)
        for o in out if isinstance(out, list) else [out]:
            o[:] = result

    def pushpull(self, key, value, out=None, priority=0):
        values = value if isinstance(value, list) else [value]
        total = values[0].copy()
        for v in values[1:]:
            total += v.as_in_context(total.context)
        reduced = allreduce(total, average=False, name=str(key), priority=priority)
        for o in (values if out is None else out if isinstance(out, list) else [out]):
            o[:] = reduced

    def set_optimizer(self, optimizer):
        raise NotImplementedError("the horovod KVStore does not run optimisers (is_capable('optimizer') is "
                                  "False): the Trainer updates on each worker")

    @staticmethod
    def is_capable(capability):
        if capability.lower() == KVStoreBase.OPTIMIZER:
            return False
        raise ValueError("Unknown capability: {}".format(capability))

    def save_optimizer_states(self, fname, dump_optimizer=False):
        raise NotImplementedError("the horovod KVStore holds no optimizer states (save them with the Trainer)")

    def load_optimizer_states(self, fname):
        raise NotImplementedError("the horovod KVStore holds no optimizer states (load them with the Trainer)")
