"""The local KVStore (``mx.kv.create('local')`` / ``'device'``) and ``create``.

MXNet's KVStoreLocal semantics: ``init`` stores a copy per key (a key is initialised
once; a store uses int keys or str keys, never both); ``push`` sums the values given for
a key (one per device) and either hands the sum to the updater with the stored value
(``updater(key, merged, stored)``, e.g. an optimiser from ``set_optimizer``) or, without
one, makes the sum the stored value; ``pull`` copies the stored value into every output.
Every operation is NDArray arithmetic on kiln's engine, so it is asynchronous in MXNet's
sense. Both 'local' and 'device' keep a stored value on the device of its initial value
and sum pushed values there (MXNet's 'local' keeps it in CPU memory; the numbers agree).

``dist.py`` subclasses this store for multi-process training: it overrides how a pushed
value is reduced across workers and where initial values come from.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..base import MXNetError
from ..ndarray import NDArray
from .. import ndarray as nd
from .. import optimizer as opt
from .base import KVStoreBase

__all__ = ["KVStore", "create"]

# a local store larger than this updates on the devices instead (MXNet's rule for 'local')
LOCAL_UPDATE_LIMIT = 1024 * 1024 * 16

LOCAL_TYPES = ("local", "device", "local_update_cpu", "local_allreduce_cpu", "local_allreduce_device")
DIST_TYPES = ("dist_sync", "dist_device_sync", "dist_async", "dist_sync_device", "dist")


def _key_kind(key):
    if isinstance(key, str):
        return str
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return int
    raise MXNetError("KVStore keys are ints or strs, got %r (%s)" % (key, type(key).__name__))


def key_value_pairs(key, value, what):
    """[(key, [NDArray, ...])] from MXNet's forms: one key with an NDArray or a list of them
    (one per device), or a list of keys with one such value per key."""
    if isinstance(key, (list, tuple)):
        if not isinstance(value, (list, tuple)) or len(value) != len(key):
            raise MXNetError("KVStore.%s: %d keys need a list of %d values, got %s"
                             % (what, len(key), len(key), type(value).__name__ if not isinstance(value, (list, tuple))
                                else "%d values" % len(value)))
        out = []
        for k, v in zip(key, value):
            out.extend(key_value_pairs(k, v, what))
        return out
    _key_kind(key)
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values or not all(isinstance(v, NDArray) for v in values):
        raise MXNetError("KVStore.%s: the value for key %r must be an NDArray or a list of NDArrays, got %r"
                         % (what, key, value))
    return [(key, values)]


class KVStore(KVStoreBase):
    """A single-process store (``local``, ``device``)."""

    def __init__(self, kvtype="local"):
        self._type = kvtype
        self._store = {}
        self._kind = None  # int or str, fixed by the first key used
        self._updater = None

    # ---- keys and values ----
    def _check_kind(self, key, what):
        kind = _key_kind(key)
        if self._kind is None:
            self._kind = kind
        elif kind is not self._kind:
            raise MXNetError("KVStore.%s: key %r is a %s, but this store uses %s keys (int and str keys cannot "
                             "be mixed in one store)" % (what, key, kind.__name__, self._kind.__name__))

    def _stored(self, key, what):
        self._check_kind(key, what)
        stored = self._store.get(key)
        if stored is None:
            raise MXNetError("KVStore.%s: key %r has not been initialized (call init first)" % (what, key))
        return stored

    @staticmethod
    def _check_shape(key, stored, values, what):
        for i, v in enumerate(values):
            if v.shape != stored.shape:
                raise MXNetError("KVStore.%s: key %r holds shape %s, but value %d has shape %s"
                                 % (what, key, stored.shape, i, v.shape))

    # ---- what subclasses change ----
    def _initial_value(self, key, value):
        """The value a key starts with (dist: rank 0's)."""
        return value.as_in_context(value.context).copy()

    def _reduce(self, key, values, stored):
        """The sum of the values pushed for ``key`` (dist: over every worker too)."""
        total = values[0].as_in_context(stored.context).astype(stored.dtype, copy=True)
        if len(values) > 1:
            total = nd.add_n(total, *[v.as_in_context(stored.context).astype(stored.dtype, copy=False)
                                      for v in values[1:]])
        return total

    def _apply(self, key, merged, stored):
        if self._updater is not None:
            self._updater(key, merged, stored)
        else:
            merged.copyto(stored)

    # ---- the API ----
    def init(self, key, value):
        """Store the initial value of each key (a key is initialised once)."""
        for k, values in key_value_pairs(key, value, "init"):
            self._check_kind(k, "init")
            if k in self._store:
                raise MXNetError("KVStore.init: key %r is already initialized" % (k,))
            self._store[k] = self._initial_value(k, values[0])

    def push(self, key, value, priority=0):
        """Sum the values of each key and update the stored value with the sum."""
        for k, values in key_value_pairs(key, value, "push"):
            stored = self._stored(k, "push")
            self._check_shape(k, stored, values, "push")
            self._apply(k, self._reduce(k, values, stored), stored)

    def pull(self, key, out=None, priority=0, ignore_sparse=True):
        """Copy the stored value of each key into its output array(s)."""
        if out is None:
            raise MXNetError("KVStore.pull: out is required (the arrays to copy the stored values into)")
        for k, outs in key_value_pairs(key, out, "pull"):
            stored = self._stored(k, "pull")
            self._check_shape(k, stored, outs, "pull")
            for o in outs:
                stored.copyto(o)

    def pushpull(self, key, value, out=None, priority=0):
        """``push`` then ``pull`` (into ``value`` when ``out`` is None)."""
        self.push(key, value, priority)
        self.pull(key, value if out is None else out, priority)

    def broadcast(self, key, value, out, priority=0):
        """``init`` with ``value``, then ``pull`` into ``out``."""
        self.init(key, value)
        self.pull(key, out, priority)

    def row_sparse_pull(self, key, out=None, priority=0, row_ids=None):
        raise NotImplementedError("KVStore.row_sparse_pull: kiln has no row_sparse storage")

    def set_gradient_compression(self, compression_params):
        raise NotImplementedError("KVStore.set_gradient_compression (%r): kiln does not compress gradients"
                                  % (compression_params,))

    def set_optimizer(self, optimizer):
        """Pushes now update the stored values with ``optimizer``."""
        self._set_updater(opt.get_updater(optimizer))

    def _set_updater(self, updater):
        """``updater(key, merged, stored)`` runs on every push instead of replacing the value."""
        self._updater = updater

    set_updater = _set_updater

    def is_capable(self, capability):
        if capability.lower() == KVStoreBase.OPTIMIZER:
            return True
        raise ValueError("Unknown capability: {}".format(capability))

    def save_optimizer_states(self, fname, dump_optimizer=False):
        if self._updater is None or not hasattr(self._updater, "get_states"):
            raise MXNetError("KVStore.save_optimizer_states: no optimizer was set (set_optimizer)")
        with open(fname, "wb") as f:
            f.write(self._updater.get_states(dump_optimizer))

    def load_optimizer_states(self, fname):
        if self._updater is None or not hasattr(self._updater, "set_states"):
            raise MXNetError("KVStore.load_optimizer_states: no optimizer was set (set_optimizer)")
        with open(fname, "rb") as f:
            self._updater.set_states(f.read())

    @property
    def type(self):
        return self._type

    @property
    def rank(self):
        return 0

    @property
    def num_workers(self):
        return 1

    def _barrier(self):
        """All workers meet here (a single process has nobody to wait for)."""

    def _send_command_to_servers(self, head, body):
        """Local stores have no servers: nothing to send."""


def create(name="local"):
    """A new KVStore: a registered class by its lower-cased name, a local store, or a
    multi-process store over MPI (``dist_sync``, ``dist_device_sync``, ``dist_async``)."""
    if not isinstance(name, str):
        raise TypeError("name must be a string")
    name = name.lower()
    if name == "horovod" and name not in KVStoreBase.kv_registry:
        from .. import distributed  # noqa: F401  (registers the Horovod-style store)
    if name in KVStoreBase.kv_registry:
        return KVStoreBase.kv_registry[name]()
    if name in LOCAL_TYPES:
        return KVStore(name)
    if name in DIST_TYPES:
        from .dist import create_dist
        return create_dist(name)
    if name == "nccl":
        raise NotImplementedError("kvstore 'nccl' aggregates on GPUs with NCCL; kiln has no GPU kvstore, use "
                                  "'device' or 'local'")
    raise MXNetError("unknown KVStore type %r (local, device, dist_sync, dist_device_sync, dist_async, or a "
                     "registered class name)" % name)


def _create_kvstore(kvstore, num_device, arg_params):
    """(store or None, update_on_kvstore) for a Trainer or Module, by MXNet 1.9's rules: no
    store for one device unless distributed; 'local' updates on the devices when a
    parameter has more than 16M elements; MXNET_UPDATE_ON_KVSTORE=0 turns updating in the
    store off; a store that cannot run an optimiser never updates."""
    import os
    update_on_kvstore = bool(int(os.getenv("MXNET_UPDATE_ON_KVSTORE", "1")))
    if kvstore is None:
        kv = None
    elif isinstance(kvstore, KVStoreBase):
        kv = kvstore
    elif isinstance(kvstore, str):
        if num_device == 1 and "dist" not in kvstore:
            kv = None
        else:
            kv = create(kvstore)
            if kvstore == "local":
                sizes = [int(np.prod(p.shape)) for p in arg_params.values()]
                if sizes and max(sizes) > LOCAL_UPDATE_LIMIT:
                    update_on_kvstore = False
    else:
        raise TypeError("kvstore must be KVStore, str or None")
    if kv is None:
        update_on_kvstore = False
    else:
        update_on_kvstore &= kv.is_capable(KVStoreBase.OPTIMIZER)
    return kv, update_on_kvstore
