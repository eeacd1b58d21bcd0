"""``KVStoreBase``: the interface every kiln KVStore implements, and the registry that
``mx.kv.create`` consults first (MXNet 1.9's ``KVStoreBase.register``, so user stores
such as MXNet's own ``TestStore`` example work unchanged)."""
from __future__ import annotations

import logging

from ..ndarray import NDArray

__all__ = ["KVStoreBase", "TestStore"]

_log = logging.getLogger(__name__)


class KVStoreBase:
    """A key-value store for data-parallel training (interface only)."""

    OPTIMIZER = "optimizer"
    kv_registry = {}

    def broadcast(self, key, value, out, priority=0):
        raise NotImplementedError("KVStoreBase.broadcast is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def pushpull(self, key, value, out=None, priority=0):
        raise NotImplementedError("KVStoreBase.pushpull is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def set_optimizer(self, optimizer):
        raise NotImplementedError("KVStoreBase.set_optimizer is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def is_capable(self, capability):
        raise NotImplementedError("KVStoreBase.is_capable is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def save_optimizer_states(self, fname, dump_optimizer=False):
        raise NotImplementedError("KVStoreBase.save_optimizer_states is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def load_optimizer_states(self, fname):
        raise NotImplementedError("KVStoreBase.load_optimizer_states is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    @property
    def type(self):
        raise NotImplementedError("KVStoreBase.type is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    @property
    def rank(self):
        raise NotImplementedError("KVStoreBase.rank is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    @property
    def num_workers(self):
        raise NotImplementedError("KVStoreBase.num_workers is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    @staticmethod
    def register(klass):
        """Register a KVStore class under its lower-cased class name (a decorator)."""
        if not isinstance(klass, type):
            raise TypeError("KVStoreBase.register takes a class, got %r" % (klass,))
        name = klass.__name__.lower()
        if name in KVStoreBase.kv_registry:
            _log.warning("new kvstore %s.%s overrides the registered %s.%s", klass.__module__, klass.__name__,
                         KVStoreBase.kv_registry[name].__module__, KVStoreBase.kv_registry[name].__name__)
        KVStoreBase.kv_registry[name] = klass
        return klass


@KVStoreBase.register
class TestStore(KVStoreBase):
    """MXNet's example store: pushpull sums the values, broadcast copies; no optimiser."""

    def broadcast(self, key, value, out, priority=0):
        for o in out if isinstance(out, list) else [out]:
            o[:] = value

    def pushpull(self, key, value, out=None, priority=0):
        if isinstance(value, NDArray):
            if out is not None:
                for o in out if isinstance(out, list) else [out]:
                    o[:] = value
            return
        ctx = value[0].context
        total = value[0].as_in_context(ctx).copy()
        for v in value[1:]:
            total += v.as_in_context(ctx)
        for o in (value if out is None else out if isinstance(out, list) else [out]):
            o[:] = total

    @staticmethod
    def is_capable(capability):
        if capability.lower() == KVStoreBase.OPTIMIZER:
            return False
        raise ValueError("Unknown capability: {}".format(capability))

    @property
    def type(self):
        return "teststore"

    @property
    def rank(self):
        return 0

    @property
    def num_workers(self):
        return 1
