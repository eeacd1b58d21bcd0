"""``DataParallelExecutorGroup``: one kiln Executor per context, the batch split between them.

MXNet 1.9's executor group semantics: the batch axis of every input is cut into one slice
per context by ``work_load_list``; parameters, their gradients and auxiliary states live
once per context and every executor of that context (one per input shape seen) binds the
same arrays, so a reshape or a shared module (BucketingModule) trains the same weights.
kiln compiles per shape, so executors are kept per input shape (a small LRU); returning to
a seen shape costs nothing, a new shape compiles (or hits the program cache).

kiln arrays on ``cpu(i)`` refuse to mix contexts in one operator, so inputs are copied to
each context with ``copyto`` and outputs are merged on the first context, as MXNet's group does.
"""
from __future__ import annotations

import logging
from collections import OrderedDict

import numpy as np

from .. import ndarray as nd
from ..base import MXNetError
from ..context import cpu
from ..executor import Executor
from ..ndarray import NDArray
from ..io import DataDesc

__all__ = ["DataParallelExecutorGroup"]

# executors kept per group besides the first-bound one (each holds its compiled program)
MAX_CACHED_SHAPES = 8


def _split_input_slice(batch_size, work_load_list):
    """MXNet's split of ``batch_size`` rows by relative work loads (rounded, rest to the last)."""
    total = sum(work_load_list)
    nums = [round(w * batch_size / total) for w in work_load_list]
    if sum(nums) < batch_size:
        nums[-1] += batch_size - sum(nums)
    slices = []
    end = 0
    for num in nums:
        begin = int(min(end, batch_size))
        end = int(min(begin + num, batch_size))
        if begin >= end:
            raise ValueError("Too many slices. Some splits are empty.")
        slices.append(slice(begin, end))
    return slices


def _as_desc(x):
    return x if isinstance(x, DataDesc) else DataDesc(*x)


def _as_nd(x):
    return x if isinstance(x, NDArray) else nd.array(np.asarray(x))


def _load_general(data, targets, major_axis):
    """Copy each source array (or its slice along the batch axis) into every context's array."""
    for d_src, d_targets, axis in zip(data, targets, major_axis):
        if isinstance(d_src, (list, tuple)):  # pre-sliced: one array per context
            for src, dst in zip(d_src, d_targets):
                _as_nd(src).copyto(dst[1] if isinstance(dst, tuple) else dst)
            continue
        d_src = _as_nd(d_src)
        for islice, d_dst in d_targets:
            if axis >= 0 and (islice.start != 0 or d_src.shape[axis] != islice.stop):
                if axis == 0:
                    part = d_src[islice.start:islice.stop]
                else:
                    part = nd.slice_axis(d_src, axis=axis, begin=islice.start, end=islice.stop)
                part.copyto(d_dst)
            else:
                d_src.copyto(d_dst)


def _merge_multi_context(outputs, major_axis):
    """Concatenate each output's per-context parts along its batch axis, on the first context."""
    rets = []
    for tensors, axis in zip(outputs, major_axis):
        if axis >= 0 and len(tensors) > 1:
            ctx = tensors[0].context
            rets.append(nd.concat(*[t.as_in_context(ctx) for t in tensors], dim=axis))
        else:
            rets.append(tensors[0])
    return rets


class _ContextExecutor:
    """What a Monitor installs on: the executor a context runs now, whatever shape it was bound to."""

    def __init__(self, group, i):
        self._group = group
        self._i = i

    def _current(self):
        return self._group.execs[self._i]

    def __getattr__(self, name):
        return getattr(self._current(), name)


class DataParallelExecutorGroup:
    """Executors over ``contexts`` for one symbol; see the module docstring."""

    def __init__(self, symbol, contexts, workload, data_shapes, label_shapes, param_names, for_training,
                 inputs_need_grad, shared_group=None, logger=logging, fixed_param_names=None, grad_req="write",
                 state_names=None, group2ctxs=None):
        if group2ctxs is not None and any(g for g in (group2ctxs if isinstance(group2ctxs, list) else [group2ctxs])):
            raise NotImplementedError("group2ctxs (model parallelism by ctx_group) is not supported by kiln")
        self.param_names = list(param_names)
        self.arg_names = symbol.list_arguments()
        self.aux_names = symbol.list_auxiliary_states()
        self.symbol = symbol
        self.contexts = list(contexts)
        self.workload = list(workload)
        self.for_training = for_training
        self.inputs_need_grad = inputs_need_grad
        self.logger = logger
        self._total_exec_bytes = 0
        self.fixed_param_names = list(fixed_param_names or [])
        self.state_names = list(state_names or [])
        if not for_training:
            grad_req = "null"
        data_shapes = [_as_desc(x) for x in data_shapes]
        if label_shapes is not None:
            label_shapes = [_as_desc(x) for x in label_shapes]
        data_names = [x.name for x in data_shapes]
        self.grad_req = self._grad_reqs(grad_req, data_names)
        # arrays every executor of a context shares: parameters, their gradients, auxiliary states
        if shared_group is not None:
            if len(shared_group.contexts) < len(self.contexts):
                raise MXNetError("shared module runs on %d contexts, this one needs %d"
                                 % (len(shared_group.contexts), len(self.contexts)))
            # the same arrays, in tables of our own (parameters only this symbol has stay ours)
            self._shared = [{k: dict(v) for k, v in shared_group._shared[i].items()}
                            for i in range(len(self.contexts))]
        else:
            self._shared = [{"arg": {}, "grad": {}, "aux": {}} for _ in self.contexts]
        self._exec_cache = OrderedDict()  # input signature -> [Executor per context]
        self._default_key = None
        self.batch_size = None
        self.slices = None
        self.execs = []
        self.data_arrays = self.label_arrays = self.param_arrays = self.state_arrays = None
        self.grad_arrays = self.aux_arrays = self.input_grad_arrays = None
        self.data_shapes = self.label_shapes = self.data_names = self.label_names = None
        self.data_layouts = self.label_layouts = None
        self.output_names = symbol.list_outputs()
        self.num_outputs = len(self.output_names)
        self.output_layouts = [DataDesc.get_batch_axis(symbol[i].attr("__layout__")) for i in range(self.num_outputs)]
        self.monitor = None
        self.bind_exec(data_shapes, label_shapes)

    def _grad_reqs(self, grad_req, data_names):
        """MXNet's per-argument grad_req: parameters (not fixed) and, with inputs_need_grad, data."""
        def default(k, req):
            if k in self.param_names:
                return "null" if k in self.fixed_param_names else req
            if k in data_names:
                return req if self.inputs_need_grad else "null"
            return "null"
        if isinstance(grad_req, str):
            return {k: default(k, grad_req) for k in self.arg_names}
        if isinstance(grad_req, (list, tuple)):
            if len(grad_req) != len(self.arg_names):
                raise ValueError("grad_req list has %d entries for %d arguments %s"
                                 % (len(grad_req), len(self.arg_names), self.arg_names))
            return dict(zip(self.arg_names, grad_req))
        if isinstance(grad_req, dict):
            reqs = {k: default(k, "write") for k in self.arg_names}
            reqs.update(grad_req)
            return reqs
        raise ValueError("grad_req must be one of str, list, tuple, or dict.")

    # ---- binding ----
    def decide_slices(self, data_shapes):
        """Batch axis of each input; fixes ``batch_size`` and the per-context slices."""
        if not data_shapes:
            raise MXNetError("the executor group needs at least one data input")
        major_axis = [DataDesc.get_batch_axis(x.layout) for x in data_shapes]
        for desc, axis in zip(data_shapes, major_axis):
            if axis == -1:
                continue
            size = desc.shape[axis]
            if self.batch_size is not None:
                if size != self.batch_size:
                    raise MXNetError("all data must have the same batch size: batch_size = %d, but %s has shape %s"
                                     % (self.batch_size, desc.name, desc.shape))
            else:
                self.batch_size = size
                self.slices = _split_input_slice(self.batch_size, self.workload)
        return major_axis

    def _sliced_shape(self, shapes, i, major_axis):
        out = []
        for desc, axis in zip(shapes, major_axis):
            shape = list(desc.shape)
            if axis >= 0:
                shape[axis] = self.slices[i].stop - self.slices[i].start
            out.append(DataDesc(desc.name, tuple(shape), desc.dtype, desc.layout))
        return out

    def bind_exec(self, data_shapes, label_shapes, shared_group=None, reshape=False):
        """Executors for these input shapes (reused when seen before)."""
        self.batch_size = None
        self.data_layouts = self.decide_slices(data_shapes)
        if label_shapes is not None:
            self.label_layouts = self.decide_slices(label_shapes)
        key = tuple((d.name, tuple(d.shape), np.dtype(d.dtype).name) for d in list(data_shapes) + list(label_shapes or []))
        execs = self._exec_cache.get(key)
        if execs is None:
            execs = []
            for i in range(len(self.contexts)):
                data_i = self._sliced_shape(data_shapes, i, self.data_layouts)
                label_i = self._sliced_shape(label_shapes, i, self.label_layouts) if label_shapes is not None else []
                execs.append(self._bind_ith_exec(i, data_i, label_i))
            self._exec_cache[key] = execs
            if self._default_key is None:
                self._default_key = key
            while len(self._exec_cache) > MAX_CACHED_SHAPES + 1:  # drop the oldest, never the first bound
                old = next(k for k in self._exec_cache if k != self._default_key and k != key)
                del self._exec_cache[old]
        else:
            self._exec_cache.move_to_end(key)
        self.execs = execs
        self.data_shapes = list(data_shapes)
        self.label_shapes = list(label_shapes) if label_shapes is not None else None
        self.data_names = [d.name for d in self.data_shapes]
        if label_shapes is not None:
            self.label_names = [d.name for d in self.label_shapes]
        self._collect_arrays()

    def reshape(self, data_shapes, label_shapes):
        """Switch to executors for new input shapes; parameters stay shared."""
        def sig(shapes):
            return None if shapes is None else [(d.name, tuple(d.shape), np.dtype(d.dtype).name) for d in shapes]
        if sig(data_shapes) == sig(self.data_shapes) and sig(label_shapes) == sig(self.label_shapes):
            return
        self.bind_exec(data_shapes, label_shapes, reshape=True)

    def _bind_ith_exec(self, i, data_shapes, label_shapes):
        """An Executor on context i whose parameter, gradient and aux arrays are the shared ones."""
        ctx = self.contexts[i]
        shared = self._shared[i]
        input_shapes = {d.name: tuple(d.shape) for d in list(data_shapes) + list(label_shapes)}
        input_types = {d.name: np.dtype(d.dtype).name for d in list(data_shapes) + list(label_shapes)}
        arg_shapes, _, aux_shapes = self.symbol.infer_shape(**input_shapes)
        if arg_shapes is None:
            partial = self.symbol.infer_shape_partial(**input_shapes)[0]
            missing = [n for n, s in zip(self.arg_names, partial) if not s or 0 in s]
            raise MXNetError("bind: cannot infer the shapes of %s from the inputs %s" % (missing, input_shapes))
        arg_types, _, aux_types = self.symbol.infer_type(**input_types)
        if arg_types is None:
            arg_types = [np.float32] * len(arg_shapes)
            aux_types = [np.float32] * len(aux_shapes)
        args, grads = [], []
        for name, shape, dtype in zip(self.arg_names, arg_shapes, arg_types):
            req = self.grad_req.get(name, "null")
            if name in self.param_names:
                arr = self._shared_array(shared["arg"], name, shape, dtype, ctx)
                grad = self._shared_array(shared["grad"], name, shape, dtype, ctx) if req != "null" else None
            else:
                arr = nd.zeros(shape, ctx, dtype=dtype)
                grad = nd.zeros(shape, ctx, dtype=dtype) if req != "null" else None
            args.append(arr)
            grads.append(grad)
        aux = [self._shared_array(shared["aux"], n, s, t, ctx) for n, s, t in zip(self.aux_names, aux_shapes, aux_types)]
        exe = Executor(self.symbol, ctx, args, grads, self.grad_req, aux)
        self._total_exec_bytes += sum(int(a.size) * np.dtype(a.dtype).itemsize
                                      for a in args + aux + [g for g in grads if g is not None])
        return exe

    @staticmethod
    def _shared_array(table, name, shape, dtype, ctx):
        arr = table.get(name)
        if arr is None:
            arr = table[name] = nd.zeros(shape, ctx, dtype=dtype)
        elif arr.shape != tuple(shape):
            raise MXNetError("parameter %r has shape %s in the shared executors, but these inputs need %s"
                             % (name, arr.shape, tuple(shape)))
        return arr

    def _collect_arrays(self):
        """MXNet's per-name lists of per-context arrays (data/label with their slices)."""
        execs = self.execs
        self.data_arrays = [[(self.slices[i], e.arg_dict[d.name]) for i, e in enumerate(execs)]
                            for d in self.data_shapes]
        self.state_arrays = [[e.arg_dict[name] for e in execs] for name in self.state_names]
        if self.label_shapes is not None:
            self.label_arrays = [[(self.slices[i], e.arg_dict[d.name]) for i, e in enumerate(execs)]
                                 for d in self.label_shapes]
        else:
            self.label_arrays = None
        self.param_arrays = [[e.arg_arrays[i] for e in execs]
                             for i, name in enumerate(self.arg_names) if name in self.param_names]
        if self.for_training:
            self.grad_arrays = [[e.grad_arrays[i] for e in execs]
                                for i, name in enumerate(self.arg_names) if name in self.param_names]
        else:
            self.grad_arrays = None
        if self.inputs_need_grad:
            self.input_grad_arrays = [[e.grad_arrays[self.arg_names.index(d.name)] for e in execs]
                                      for d in self.data_shapes if d.name in self.arg_names]
        else:
            self.input_grad_arrays = None
        self.aux_arrays = [[e.aux_arrays[i] for e in execs] for i in range(len(self.aux_names))]

    # ---- parameters ----
    def set_params(self, arg_params, aux_params, allow_extra=False):
        """Copy the given values into every context's arrays."""
        for exe in self.execs:
            exe.copy_params_from(arg_params, aux_params, allow_extra_params=allow_extra)

    def get_params(self, arg_params, aux_params):
        """The mean over contexts of every parameter and aux state, into the given (CPU) arrays."""
        for name, block in zip(self.param_names, self.param_arrays):
            self._mean_into(block, arg_params[name])
        for name, block in zip(self.aux_names, self.aux_arrays):
            self._mean_into(block, aux_params[name])

    @staticmethod
    def _mean_into(block, dst):
        if len(block) == 1:
            block[0].astype(dst.dtype, copy=False).copyto(dst)
            return
        parts = [w.copyto(cpu()) for w in block]
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        (total / len(block)).astype(dst.dtype, copy=False).copyto(dst)

    # ---- running ----
    def forward(self, data_batch, is_train=None):
        """Load the batch (sliced per context) and run every executor's forward."""
        _load_data(data_batch, self.data_arrays, self.data_layouts)
        if is_train is None:
            is_train = self.for_training
        if self.label_arrays is not None:
            labels = data_batch[0].label if isinstance(data_batch, list) else data_batch.label
            if labels:
                _load_label(data_batch, self.label_arrays, self.label_layouts)
        for exe in self.execs:
            exe.forward(is_train=is_train)

    def get_output_shapes(self):
        shapes = []
        for key, out, axis in zip(self.output_names, self.execs[0].outputs, self.output_layouts):
            shape = list(out.shape)
            if axis >= 0:
                shape[axis] = self.batch_size
            shapes.append((key, tuple(shape)))
        return shapes

    def get_outputs(self, merge_multi_context=True, begin=0, end=None):
        if end is None:
            end = self.num_outputs
        outputs = [[exe.outputs[i] for exe in self.execs] for i in range(begin, end)]
        if merge_multi_context:
            outputs = _merge_multi_context(outputs, self.output_layouts)
        return outputs

    def get_states(self, merge_multi_context=True):
        if merge_multi_context:
            raise MXNetError("merge_multi_context=True is not supported for get_states yet.")
        return self.state_arrays

    def set_states(self, states=None, value=None):
        if states is not None:
            if value is not None:
                raise MXNetError("Only one of states & value can be specified.")
            _load_general(states, self.state_arrays, (0,) * len(states))
        else:
            if value is None:
                raise MXNetError("At least one of states & value must be specified.")
            for d_dst in self.state_arrays:
                for dst in d_dst:
                    dst[:] = value

    def get_input_grads(self, merge_multi_context=True):
        if not self.inputs_need_grad:
            raise MXNetError("get_input_grads: bind with inputs_need_grad=True first")
        if merge_multi_context:
            return _merge_multi_context(self.input_grad_arrays, self.data_layouts)
        return self.input_grad_arrays

    def backward(self, out_grads=None):
        """Each executor's backward with its slice of the head gradients."""
        if not self.for_training:
            raise MXNetError("re-bind with for_training=True to run backward")
        if out_grads is None:
            out_grads = []
        elif isinstance(out_grads, NDArray):
            out_grads = [out_grads]
        for i, (exe, islice) in enumerate(zip(self.execs, self.slices)):
            parts = []
            for grad, axis in zip(out_grads, self.output_layouts):
                grad = _as_nd(grad)
                if axis >= 0 and len(self.execs) > 1:
                    part = nd.slice_axis(grad, axis=axis, begin=islice.start, end=islice.stop)
                    parts.append(part.as_in_context(self.contexts[i]))
                else:
                    parts.append(grad.as_in_context(self.contexts[i]))
            exe.backward(out_grads=parts or None)

    def update_metric(self, eval_metric, labels, pre_sliced):
        """Update the metric with each context's outputs and its slice of the labels."""
        for k, (exe, islice) in enumerate(zip(self.execs, self.slices)):
            if not pre_sliced:
                parts = []
                for label, axis in zip(labels, self.label_layouts or [0] * len(labels)):
                    label = _as_nd(label)
                    if axis == 0:
                        parts.append(label[islice] if len(self.execs) > 1 else label)
                    elif axis > 0:
                        parts.append(nd.slice_axis(label, axis=axis, begin=islice.start, end=islice.stop))
                    else:
                        parts.append(label)
            else:
                parts = labels[k]
            eval_metric.update_dict(OrderedDict(zip(self.label_names or [], parts)),
                                    OrderedDict(zip(self.output_names, exe.outputs)))

    def install_monitor(self, mon):
        """Install ``mon`` on one view per context that follows reshapes."""
        self.monitor = mon
        for i in range(len(self.contexts)):
            mon.install(_ContextExecutor(self, i))


def _load_data(batch, targets, major_axis):
    if isinstance(batch, list):
        new_batch = [[b.data[i] for b in batch] for i in range(len(targets))]
        _load_general(new_batch, [[dst for _, dst in t] for t in targets], major_axis)
    else:
        _load_general(batch.data, targets, major_axis)


def _load_label(batch, targets, major_axis):
    if isinstance(batch, list):
        new_batch = [[b.label[i] for b in batch] for i in range(len(targets))]
        _load_general(new_batch, [[dst for _, dst in t] for t in targets], major_axis)
    else:
        _load_general(batch.label, targets, major_axis)
