"""``BaseModule``: MXNet 1.9.1's module interface and the loops written once on top of it
(``fit``, ``score``, ``predict``, ``iter_predict``, parameter files).

Subclasses provide bind/init/forward/backward/update; the loops only call those, so a
Module, BucketingModule, SequentialModule or PythonModule trains the same way. Log lines
are MXNet's, through ``self.logger`` (the ``logging`` module unless one is given).
"""
from __future__ import annotations

import logging
import time
import warnings

import numpy as np

from .. import metric
from .. import ndarray as nd
from ..context import cpu
from ..initializer import Uniform
from ..io import DataBatch, DataDesc
from ..model import BatchEndParam
from ..ndarray import NDArray

__all__ = ["BaseModule"]


def _as_list(obj):
    return obj if isinstance(obj, (list, tuple)) else [obj]


def checked_name_lists(symbol, data_names, label_names, state_names, fixed_param_names):
    """The four name lists of a Module as lists (None -> []), each checked against ``symbol``."""
    lists = [list(v) if v is not None else [] for v in (data_names, label_names, state_names, fixed_param_names)]
    for names, kind, throw in zip(lists, ("data", "label", "state", "fixed_param"), (True, False, True, True)):
        _check_input_names(symbol, names, kind, throw)
    return lists


def _check_input_names(symbol, names, typename, throw):
    """Every name must be an argument of the symbol (MXNet's message, with likely candidates)."""
    args = symbol.list_arguments()
    for name in names:
        if name in args:
            continue
        candidates = [a for a in args if not a.endswith(("_weight", "_bias", "_gamma", "_beta"))]
        msg = ("\033[91mYou created Module with Module(..., %s_names=%s) but input with name '%s' is not found in "
               "symbol.list_arguments(). Did you mean one of:\n\t%s\033[0m"
               % (typename, str(names), name, "\n\t".join(candidates)))
        if throw:
            raise ValueError(msg)
        warnings.warn(msg)


def _check_names_match(data_names, data_shapes, name, throw):
    actual = [x[0] for x in data_shapes]
    if sorted(data_names) != sorted(actual):
        msg = "Data provided by %s_shapes don't match names specified by %s_names (%s vs. %s)" % (
            name, name, str(data_shapes), str(data_names))
        if throw:
            raise ValueError(msg)
        warnings.warn(msg)


def _parse_data_desc(data_names, label_names, data_shapes, label_shapes):
    """DataDesc lists from DataDesc or (name, shape) pairs; data names must match, label names should."""
    data_shapes = [x if isinstance(x, DataDesc) else DataDesc(*x) for x in data_shapes]
    _check_names_match(data_names, data_shapes, "data", True)
    if label_shapes is not None:
        label_shapes = [x if isinstance(x, DataDesc) else DataDesc(*x) for x in label_shapes]
        _check_names_match(label_names, label_shapes, "label", False)
    else:
        _check_names_match(label_names, [], "label", False)
    return data_shapes, label_shapes


class BaseModule:
    """A trainable computation: bind shapes, initialise parameters and an optimiser, then
    forward/backward/update batches; ``fit``/``score``/``predict`` are built on these."""

    def __init__(self, logger=logging):
        self.logger = logger
        self.binded = False
        self.for_training = False
        self.inputs_need_grad = False
        self.params_initialized = False
        self.optimizer_initialized = False
        self._symbol = None
        self._total_exec_bytes = 0

    # ---- high-level loops ----
    def forward_backward(self, data_batch):
        """Forward in training mode, then backward."""
        self.forward(data_batch, is_train=True)
        self.backward()

    def score(self, eval_data, eval_metric, num_batch=None, batch_end_callback=None, score_end_callback=None,
              reset=True, epoch=0, sparse_row_id_fn=None):
        """Run prediction over ``eval_data`` and return the metric's (name, value) pairs."""
        self._check_ready("score")
        if reset:
            eval_data.reset()
        if not isinstance(eval_metric, metric.EvalMetric):
            eval_metric = metric.create(eval_metric)
        eval_metric.reset()
        actual_num_batch = 0
        for nbatch, eval_batch in enumerate(eval_data):
            if num_batch is not None and nbatch == num_batch:
                break
            self.prepare(eval_batch, sparse_row_id_fn=sparse_row_id_fn)
            self.forward(eval_batch, is_train=False)
            if isinstance(eval_batch, list):
                self.update_metric(eval_metric, [eb.label for eb in eval_batch], pre_sliced=True)
            else:
                self.update_metric(eval_metric, eval_batch.label)
            if batch_end_callback is not None:
                params = BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=eval_metric, locals=locals())
                for callback in _as_list(batch_end_callback):
                    callback(params)
            actual_num_batch += 1
        if score_end_callback:
            params = BatchEndParam(epoch=epoch, nbatch=actual_num_batch, eval_metric=eval_metric, locals=locals())
            for callback in _as_list(score_end_callback):
                callback(params)
        return eval_metric.get_name_value()

    def iter_predict(self, eval_data, num_batch=None, reset=True, sparse_row_id_fn=None):
        """Yield (outputs without the padded rows, batch index, batch) for each batch."""
        self._check_ready("iter_predict")
        if reset:
            eval_data.reset()
        for nbatch, eval_batch in enumerate(eval_data):
            if num_batch is not None and nbatch == num_batch:
                break
            self.prepare(eval_batch, sparse_row_id_fn=sparse_row_id_fn)
            self.forward(eval_batch, is_train=False)
            pad = eval_batch.pad or 0
            outputs = [out[0:out.shape[0] - pad] for out in self.get_outputs()]
            yield (outputs, nbatch, eval_batch)

    def predict(self, eval_data, num_batch=None, merge_batches=True, reset=True, always_output_list=False,
                sparse_row_id_fn=None):
        """Outputs over a DataIter (padding dropped), merged along the batch axis by default;
        an NDArray or numpy array is one forward and returns the first output."""
        self._check_ready("predict")
        if isinstance(eval_data, (NDArray, np.ndarray)):
            if isinstance(eval_data, np.ndarray):
                eval_data = nd.array(eval_data)
            self.forward(DataBatch([eval_data]))
            return self.get_outputs()[0]
        if not (hasattr(eval_data, "__iter__") and hasattr(eval_data, "reset")):
            raise ValueError("eval_data must be of type NDArray or DataIter")
        if reset:
            eval_data.reset()
        output_list = []
        for nbatch, eval_batch in enumerate(eval_data):
            if num_batch is not None and nbatch == num_batch:
                break
            self.prepare(eval_batch, sparse_row_id_fn=sparse_row_id_fn)
            self.forward(eval_batch, is_train=False)
            pad = eval_batch.pad or 0
            output_list.append([out[0:out.shape[0] - pad].copy() for out in self.get_outputs()])
        if not output_list:
            return output_list
        if merge_batches:
            num_outputs = len(output_list[0])
            for out in output_list:
                if len(out) != num_outputs:
                    raise AssertionError("Cannot merge batches, as num of outputs is not the same in mini-batches. "
                                         "Maybe bucketing is used?")
            merged = [nd.concat(*[out[i] for out in output_list], dim=0) if len(output_list) > 1
                      else output_list[0][i] for i in range(num_outputs)]
            if num_outputs == 1 and not always_output_list:
                return merged[0]
            return merged
        return output_list

    def fit(self, train_data, eval_data=None, eval_metric="acc", epoch_end_callback=None, batch_end_callback=None,
            kvstore="local", optimizer="sgd", optimizer_params=(("learning_rate", 0.01),), eval_end_callback=None,
            eval_batch_end_callback=None, initializer=Uniform(0.01), arg_params=None, aux_params=None,
            allow_missing=False, force_rebind=False, force_init=False, begin_epoch=0, num_epoch=None,
            validation_metric=None, monitor=None, sparse_row_id_fn=None):
        """Train for epochs ``begin_epoch..num_epoch-1`` (MXNet's loop, callbacks and log lines)."""
        assert num_epoch is not None, "please specify number of epochs"
        self.bind(data_shapes=train_data.provide_data, label_shapes=train_data.provide_label, for_training=True,
                  force_rebind=force_rebind)
        if monitor is not None:
            self.install_monitor(monitor)
        self.init_params(initializer=initializer, arg_params=arg_params, aux_params=aux_params,
                         allow_missing=allow_missing, force_init=force_init)
        self.init_optimizer(kvstore=kvstore, optimizer=optimizer, optimizer_params=optimizer_params)
        if validation_metric is None:
            validation_metric = eval_metric
        if not isinstance(eval_metric, metric.EvalMetric):
            eval_metric = metric.create(eval_metric)
        for epoch in range(begin_epoch, num_epoch):
            tic = time.time()
            eval_metric.reset()
            nbatch = 0
            data_iter = iter(train_data)
            end_of_batch = False
            next_data_batch = next(data_iter)
            eval_name_vals = []
            while not end_of_batch:
                data_batch = next_data_batch
                if monitor is not None:
                    monitor.tic()
                self.forward_backward(data_batch)
                self.update()
                if isinstance(data_batch, list):
                    self.update_metric(eval_metric, [db.label for db in data_batch], pre_sliced=True)
                else:
                    self.update_metric(eval_metric, data_batch.label)
                try:
                    next_data_batch = next(data_iter)
                    self.prepare(next_data_batch, sparse_row_id_fn=sparse_row_id_fn)
                except StopIteration:
                    end_of_batch = True
                if monitor is not None:
                    monitor.toc_print()
                if end_of_batch:
                    eval_name_vals = eval_metric.get_global_name_value()
                if batch_end_callback is not None:
                    params = BatchEndParam(epoch=epoch, nbatch=nbatch, eval_metric=eval_metric, locals=locals())
                    for callback in _as_list(batch_end_callback):
                        callback(params)
                nbatch += 1
            for name, val in eval_name_vals:
                self.logger.info("Epoch[%d] Train-%s=%f", epoch, name, val)
            toc = time.time()
            self.logger.info("Epoch[%d] Time cost=%.3f", epoch, toc - tic)
            # sync the parameters from the devices (aux states averaged across contexts)
            arg_params, aux_params = self.get_params()
            self.set_params(arg_params, aux_params)
            if epoch_end_callback is not None:
                for callback in _as_list(epoch_end_callback):
                    callback(epoch, self.symbol, arg_params, aux_params)
            if eval_data is not None:
                res = self.score(eval_data, validation_metric, score_end_callback=eval_end_callback,
                                 batch_end_callback=eval_batch_end_callback, epoch=epoch)
                for name, val in res:
                    self.logger.info("Epoch[%d] Validation-%s=%f", epoch, name, val)
            train_data.reset()

    def _check_ready(self, what):
        if not (self.binded and self.params_initialized):
            raise AssertionError("%s: the module must be bound (bind) and its parameters initialized (init_params) "
                                 "first" % what)

    # ---- symbol information ----
    @property
    def data_names(self):
        raise NotImplementedError("BaseModule.data_names is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    @property
    def output_names(self):
        raise NotImplementedError("BaseModule.output_names is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    @property
    def data_shapes(self):
        raise NotImplementedError("BaseModule.data_shapes is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    @property
    def label_shapes(self):
        raise NotImplementedError("BaseModule.label_shapes is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    @property
    def output_shapes(self):
        raise NotImplementedError("BaseModule.output_shapes is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    @property
    def symbol(self):
        return self._symbol

    # ---- parameters ----
    def get_params(self):
        raise NotImplementedError("BaseModule.get_params is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def init_params(self, initializer=Uniform(0.01), arg_params=None, aux_params=None, allow_missing=False,
                    force_init=False, allow_extra=False):
        raise NotImplementedError("BaseModule.init_params is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def set_params(self, arg_params, aux_params, allow_missing=False, force_init=True, allow_extra=False):
        """Assign parameter values (init_params without an initializer)."""
        self.init_params(initializer=None, arg_params=arg_params, aux_params=aux_params,
                         allow_missing=allow_missing, force_init=force_init, allow_extra=allow_extra)

    def _set_params_by_init(self, arg_params, aux_params, allow_missing, force_init, allow_extra):
        """MXNet's set_params preamble for modules that can write only the devices' copies: True
        when handled here (no allow_missing: a full init_params; already set and not forced:
        warn and ignore)."""
        if not allow_missing:
            self.init_params(initializer=None, arg_params=arg_params, aux_params=aux_params,
                             allow_missing=allow_missing, force_init=force_init, allow_extra=allow_extra)
            return True
        if self.params_initialized and not force_init:
            warnings.warn("Parameters already initialized and force_init=False. set_params call ignored.",
                          stacklevel=3)
            return True
        return False

    def save_params(self, fname):
        """Write MXNet's .params file (``arg:``/``aux:`` keys, CPU arrays)."""
        arg_params, aux_params = self.get_params()
        save_dict = {"arg:%s" % k: v.as_in_context(cpu()) for k, v in arg_params.items()}
        save_dict.update({"aux:%s" % k: v.as_in_context(cpu()) for k, v in aux_params.items()})
        nd.save(fname, save_dict)

    def load_params(self, fname):
        """Read a file ``save_params`` wrote and assign its values."""
        save_dict = nd.load(fname)
        arg_params, aux_params = {}, {}
        for k, value in save_dict.items():
            arg_type, name = k.split(":", 1)
            if arg_type == "arg":
                arg_params[name] = value
            elif arg_type == "aux":
                aux_params[name] = value
            else:
                raise ValueError("Invalid param file " + fname)
        self.set_params(arg_params, aux_params)

    def get_states(self, merge_multi_context=True):
        assert self.binded and self.params_initialized
        assert not merge_multi_context
        return []

    def set_states(self, states=None, value=None):
        assert self.binded and self.params_initialized
        assert not states and not value

    def install_monitor(self, mon):
        raise NotImplementedError("BaseModule.install_monitor is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def prepare(self, data_batch, sparse_row_id_fn=None):
        """Hook run before each forward (MXNet pulls sparse rows here)."""
        if sparse_row_id_fn is not None:
            warnings.warn(UserWarning("sparse_row_id_fn is not invoked for BaseModule."))

    # ---- computation ----
    def forward(self, data_batch, is_train=None):
        raise NotImplementedError("BaseModule.forward is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def backward(self, out_grads=None):
        raise NotImplementedError("BaseModule.backward is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def get_outputs(self, merge_multi_context=True):
        raise NotImplementedError("BaseModule.get_outputs is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def get_input_grads(self, merge_multi_context=True):
        raise NotImplementedError("BaseModule.get_input_grads is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def update(self):
        raise NotImplementedError("BaseModule.update is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def update_metric(self, eval_metric, labels, pre_sliced=False):
        raise NotImplementedError("BaseModule.update_metric is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def bind(self, data_shapes, label_shapes=None, for_training=True, inputs_need_grad=False, force_rebind=False,
             shared_module=None, grad_req="write"):
        raise NotImplementedError("BaseModule.bind is implemented by subclasses (%s does not)"
                                  % type(self).__name__)

    def init_optimizer(self, kvstore="local", optimizer="sgd", optimizer_params=(("learning_rate", 0.01),),
                       force_init=False):
        raise NotImplementedError("BaseModule.init_optimizer is implemented by subclasses (%s does not)"
                                  % type(self).__name__)
