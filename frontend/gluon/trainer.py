"""``gluon.Trainer``: applies an optimiser to a set of Parameters (MXNet 1.9's semantics).

The store is chosen as MXNet does (``kvstore._create_kvstore``): none for one context
unless distributed, else a KVStore (a name, or a ``KVStoreBase`` object) that either
updates the weights itself (``update_on_kvstore``: each step pushes the gradients and
pulls the updated weights) or only sums the gradients (``pushpull``) for every context's
updater to apply. ``dist_*`` stores make it data-parallel across processes.

Parameters are used through MXNet's Parameter interface only (``name``,
``grad_req``, ``lr_mult``, ``wd_mult``, ``list_data()``, ``list_grad()``,
``list_ctx()``, ``_data is None`` while deferred). Stale-gradient detection
follows MXNet's ``_fresh_grad`` flag when the arrays carry one; arrays without it
count as fresh.
"""
from __future__ import annotations

import logging

from .. import optimizer as opt
from ..base import MXNetError
from ..kvstore import KVStoreBase
from ..kvstore.kvstore import _create_kvstore

__all__ = ["Trainer"]

_log = logging.getLogger(__name__)

def _param_list(params):
    """A ParameterDict or dict (sorted by key, as MXNet) or a list/tuple of Parameters."""
    if isinstance(params, dict) or (hasattr(params, "keys") and hasattr(params, "values")
                                    and hasattr(params, "__getitem__")):
        params = [params[key] for key in sorted(list(params.keys()))]
    if not isinstance(params, (list, tuple)):
        raise ValueError("First argument must be a list or dict of Parameters, got %s." % type(params))
    for p in params:
        if not all(hasattr(p, a) for a in ("name", "grad_req", "list_data", "list_grad", "list_ctx")):
            raise ValueError("First argument must be a list or dict of Parameters, got list of %s." % type(p))
    return list(params)


class Trainer:
    """Updates Parameters with an optimiser: ``step(batch_size)`` after ``backward``."""

    def __init__(self, params, optimizer, optimizer_params=None, kvstore="device", compression_params=None,
                 update_on_kvstore=None):
        params = _param_list(params)
        self._params = []
        self._param2idx = {}
        self._contains_sparse_weight = False
        self._contains_sparse_grad = False
        for i, param in enumerate(params):
            self._param2idx[param.name] = i
            self._params.append(param)
            if hasattr(param, "_set_trainer"):
                param._set_trainer(self)
            stypes = (getattr(param, "_stype", "default"), getattr(param, "_grad_stype", "default"))
            if stypes != ("default", "default"):
                raise NotImplementedError("gluon.Trainer: sparse parameter %r (kiln has no sparse storage)"
                                          % param.name)
        self._compression_params = compression_params
        self._contexts = self._check_contexts()
        optimizer_params = optimizer_params if optimizer_params else {}
        self._init_optimizer(optimizer, optimizer_params)
        self._scale = self._optimizer.rescale_grad
        if kvstore is not None and kvstore is not False and not isinstance(kvstore, (str, KVStoreBase)):
            raise TypeError("kvstore must be KVStore, str or None, got %s" % type(kvstore).__name__)
        self._kvstore_params = {"kvstore": kvstore or None, "update_on_kvstore": update_on_kvstore}
        self._kv_initialized = False
        self._kvstore = None
        self._update_on_kvstore = None
        self._distributed = None
        self._params_to_init = []
        self._reset_kvstore()

    def _check_contexts(self):
        contexts = None
        for param in self._params:
            ctx = param.list_ctx()
            if contexts is not None and list(contexts) != list(ctx):
                raise MXNetError("All Parameters must be initialized on the same set of contexts, but Parameter %s "
                                 "is initialized on %s while previous Parameters are initialized on %s."
                                 % (param.name, ctx, contexts))
            contexts = ctx
        return contexts

    def _init_optimizer(self, optimizer, optimizer_params):
        param_dict = {i: param for i, param in enumerate(self._params)}
        if isinstance(optimizer, opt.Optimizer):
            if optimizer_params:
                raise MXNetError("optimizer_params must be None if optimizer is an instance of Optimizer "
                                 "instead of str")
            self._optimizer = optimizer
            self._optimizer.param_dict = param_dict
        else:
            self._optimizer = opt.create(optimizer, param_dict=param_dict, **optimizer_params)
        self._updaters = [opt.get_updater(self._optimizer) for _ in (self._contexts or [None])]

    # ---- the store ----
    def _reset_kvstore(self):
        if self._kvstore and "dist" in self._kvstore.type:
            raise RuntimeError("Cannot reset distributed KVStore.")
        self._kv_initialized = False
        self._kvstore = None
        self._distributed = None
        self._update_on_kvstore = None
        self._params_to_init = list(self._params)

    def _init_kvstore(self):
        """MXNet 1.9's choice of store and of where the update runs, for dense parameters."""
        config = self._kvstore_params
        arg_arrays = {p.name: p.list_data()[0] for p in self._params if p._data is not None}
        kvstore, update_on_kvstore = _create_kvstore(config["kvstore"], len(self._contexts or [None]), arg_arrays)
        self._distributed = "dist" in kvstore.type if kvstore else False
        if self._distributed and "async" in kvstore.type:
            update_on_kvstore = True
            if config["update_on_kvstore"] is False:
                raise ValueError("Please set update_on_kvstore=True when training in async mode.")
        if config["update_on_kvstore"] is not None:
            update_on_kvstore = config["update_on_kvstore"]
        if update_on_kvstore and not kvstore.is_capable("optimizer"):
            if config["update_on_kvstore"]:
                raise ValueError("Please set update_on_kvstore=False when training with {}".format(type(kvstore)))
            update_on_kvstore = False
        if kvstore:
            if self._compression_params:
                kvstore.set_gradient_compression(self._compression_params)
            if update_on_kvstore:
                kvstore.set_optimizer(self._optimizer)
            self._kvstore, self._update_on_kvstore = kvstore, update_on_kvstore
        else:
            self._kvstore, self._update_on_kvstore = None, None
        self._kv_initialized = True

    def _init_params(self):
        """Put each initialised parameter into the store and give every context its value."""
        pending = []
        if self._kvstore:
            for param in self._params_to_init:
                if param._data is None:
                    pending.append(param)
                    continue
                arrays = param.list_data()
                self._kvstore.broadcast(self._param2idx[param.name], arrays[0], arrays)
        self._params_to_init = pending

    def _prepare(self):
        if not self._kv_initialized:
            self._init_kvstore()
        if self._params_to_init:
            self._init_params()

    @property
    def learning_rate(self):
        if not isinstance(self._optimizer, opt.Optimizer):
            raise UserWarning("Optimizer has to be defined before its learning rate can be accessed.")
        return self._optimizer.learning_rate

    @property
    def optimizer(self):
        if isinstance(self._optimizer, opt.Optimizer):
            return self._optimizer
        raise UserWarning("Optimizer has not been initialized yet")

    def set_learning_rate(self, lr):
        if not isinstance(self._optimizer, opt.Optimizer):
            raise UserWarning("Optimizer has to be defined before its learning rate is mutated.")
        self._optimizer.set_learning_rate(lr)

    def _check_and_rescale_grad(self, scale):
        self._optimizer.rescale_grad = scale

    def step(self, batch_size, ignore_stale_grad=False):
        """One update: gradients are scaled by ``rescale_grad / batch_size``, reduced, applied."""
        self._check_and_rescale_grad(self._scale / batch_size)
        self._prepare()
        self._allreduce_grads()
        self._update(ignore_stale_grad)

    def allreduce_grads(self):
        """Sum the gradient copies of every context (for ``update`` after gradient manipulation)."""
        self._prepare()
        if self._kvstore and self._update_on_kvstore:
            raise MXNetError("allreduce_grads() when parameters are updated on kvstore is not supported. Try "
                             "setting `update_on_kvstore` to False when creating trainer.")
        self._allreduce_grads()

    def _allreduce_grads(self):
        if not self._kvstore:
            return
        for i, param in enumerate(self._params):
            if param.grad_req != "null":
                grads = param.list_grad()
                if self._update_on_kvstore:  # push gradients, pull updated weights
                    self._kvstore.pushpull(i, grads, out=param.list_data(), priority=-i)
                else:
                    self._kvstore.pushpull(i, grads, priority=-i)

    def update(self, batch_size, ignore_stale_grad=False):
        """Apply the gradients (already reduced by ``allreduce_grads``) without reducing them."""
        self._prepare()
        if self._kvstore and self._update_on_kvstore:
            raise MXNetError("update() when parameters are updated on kvstore is not supported. Try setting "
                             "`update_on_kvstore` to False when creating trainer.")
        self._check_and_rescale_grad(self._scale / batch_size)
        self._update(ignore_stale_grad)

    def _update(self, ignore_stale_grad=False):
        updates = [[] for _ in self._updaters]
        for i, param in enumerate(self._params):
            if param.grad_req == "null":
                continue
            data = param.list_data()
            if not ignore_stale_grad:
                for d in data:
                    if getattr(d, "_fresh_grad", True) is False:
                        raise UserWarning(
                            "Gradient of Parameter `%s` on context %s has not been updated by backward since last "
                            "`step`. This could mean a bug in your model that made it only use a subset of the "
                            "Parameters (Blocks) for this iteration. If you are intentionally only using a subset, "
                            "call step with ignore_stale_grad=True to suppress this warning and skip updating of "
                            "Parameters with stale gradient" % (param.name, d.context))
            if self._kvstore and self._update_on_kvstore:
                continue
            for upd, arr, grad in zip(updates, data, param.list_grad()):
                fresh = getattr(arr, "_fresh_grad", None)
                if not ignore_stale_grad or fresh is not False:
                    upd.append((i, grad, arr))
                    if fresh is not None:
                        arr._fresh_grad = False
        if not (self._kvstore and self._update_on_kvstore):
            for updater, upd in zip(self._updaters, updates):
                if upd:
                    idx, grads, weights = zip(*upd)
                    updater(list(idx), list(grads), list(weights))

    # ---- states ----
    def save_states(self, fname):
        """Write the optimiser and its states (kiln's pickle-free format, see mx.optimizer.Updater)."""
        self._prepare()
        if self._update_on_kvstore:
            if self._params_to_init:
                raise MXNetError("Cannot save trainer states when some parameters are not yet initialized in "
                                 "kvstore.")
            self._kvstore.save_optimizer_states(fname, dump_optimizer=True)
        else:
            with open(fname, "wb") as fout:
                fout.write(self._updaters[0].get_states(dump_optimizer=True))

    def load_states(self, fname):
        self._prepare()
        if self._update_on_kvstore:
            self._kvstore.load_optimizer_states(fname)
            self._optimizer = self._kvstore._updater.optimizer
        else:
            with open(fname, "rb") as f:
                states = f.read()
            for updater in self._updaters:
                updater.set_states(states)
                updater.optimizer = self._updaters[0].optimizer
            self._optimizer = self._updaters[0].optimizer
        self._optimizer.param_dict = {i: param for i, param in enumerate(self._params)}
