"""MXNet 1.9.1's data iterators (``mx.io``) in Python.

``DataDesc``/``DataBatch``/``DataIter``/``NDArrayIter``/``ResizeIter``/``PrefetchingIter`` follow
MXNet's Python classes, quirks included (roll_over's first batch reports ``pad`` = the number of
carried-over samples, shuffling rebuilds the arrays as float32). ``CSVIter`` and ``MNISTIter`` are
C++ iterators in MXNet; here they are ``MXDataIter`` subclasses that load the whole file with numpy
and replay MXNet's batching (``BatchLoader``'s round_batch, MNIST's libstdc++ ``std::shuffle``).
Batches are cut with numpy on the host and wrapped as new NDArrays, so no operator is compiled
and the prefetch threads never touch the compiler.
"""
from __future__ import annotations

import ast
import logging
import os
import struct
import gzip
import threading
import warnings
from collections import namedtuple

import numpy as np

from ..base import MXNetError
from ..ndarray import NDArray, array

from .utils import _init_data, _getdata_by_idx

__all__ = ["DataDesc", "DataBatch", "DataIter", "ResizeIter", "PrefetchingIter", "NDArrayIter",
           "MXDataIter", "CSVIter", "MNISTIter", "LibSVMIter", "ImageRecordIter", "ImageRecordIter_v1",
           "ImageRecordUInt8Iter", "ImageRecordUInt8Iter_v1", "ImageRecordInt8Iter", "ImageDetRecordIter"]

_LOG = logging.getLogger(__name__)
_REAL_T = np.float32


class DataDesc(namedtuple("DataDesc", ["name", "shape"])):
    """``(name, shape)`` tuple that also carries ``dtype`` and ``layout``; it compares and unpacks
    as the plain pair, as MXNet's, so old code reading ``provide_data`` as tuples keeps working."""

    def __new__(cls, name, shape, dtype=_REAL_T, layout="NCHW"):
        ret = super().__new__(cls, name, shape)
        ret.dtype = dtype
        ret.layout = layout
        return ret

    def __repr__(self):
        return "DataDesc[%s,%s,%s,%s]" % (self.name, self.shape, self.dtype, self.layout)

    @staticmethod
    def get_batch_axis(layout):
        """Axis of ``N`` in ``layout`` (0 when no layout is given, -1 when it has no batch axis)."""
        if layout is None:
            return 0
        return layout.find("N")

    @staticmethod
    def get_list(shapes, types):
        """DataDescs from ``[(name, shape)]`` and optional ``[(name, dtype)]``."""
        if types is not None:
            type_dict = dict(types)
            return [DataDesc(x[0], x[1], type_dict[x[0]]) for x in shapes]
        return [DataDesc(x[0], x[1]) for x in shapes]


class DataBatch:
    """One batch: lists of data and label arrays plus the padding count and sample indices."""

    def __init__(self, data, label=None, pad=None, index=None, bucket_key=None, provide_data=None,
                 provide_label=None):
        if data is not None and not isinstance(data, (list, tuple)):
            raise AssertionError("Data must be list of NDArrays")
        if label is not None and not isinstance(label, (list, tuple)):
            raise AssertionError("Label must be list of NDArrays")
        self.data = data
        self.label = label
        self.pad = pad
        self.index = index
        self.bucket_key = bucket_key
        self.provide_data = provide_data
        self.provide_label = provide_label

    def __str__(self):
        data_shapes = [d.shape for d in self.data]
        label_shapes = [lab.shape for lab in self.label] if self.label else None
        return "{}: data shapes: {} label shapes: {}".format(type(self).__name__, data_shapes, label_shapes)


class DataIter:
    """Base iterator: ``next`` builds a DataBatch from ``iter_next`` and the ``get*`` hooks."""

    def __init__(self, batch_size=0):
        self.batch_size = batch_size

    def __iter__(self):
        return self

    def reset(self):
        """Go back to the start of the data."""

    def next(self):
        if self.iter_next():
            return DataBatch(data=self.getdata(), label=self.getlabel(), pad=self.getpad(),
                             index=self.getindex())
        raise StopIteration

    def __next__(self):
        return self.next()

    def iter_next(self):
        """Advance one batch; False at the end."""

    def getdata(self):
        """Data arrays of the current batch."""

    def getlabel(self):
        """Label arrays of the current batch."""

    def getindex(self):
        return None

    def getpad(self):
        """Number of padding samples at the end of the current batch."""


class _BatchHolder(DataIter):
    """An iterator that keeps the whole current batch (``current_batch``) and answers from it."""

    def getdata(self):
        return self.current_batch.data

    def getlabel(self):
        return self.current_batch.label

    def getindex(self):
        return self.current_batch.index

    def getpad(self):
        return self.current_batch.pad


class ResizeIter(_BatchHolder):
    """Makes an epoch exactly ``size`` batches, restarting the inner iterator when it runs out."""

    def __init__(self, data_iter, size, reset_internal=True):
        super().__init__()
        self.data_iter = data_iter
        self.size = size
        self.reset_internal = reset_internal
        self.cur = 0
        self.current_batch = None
        self.provide_data = data_iter.provide_data
        self.provide_label = data_iter.provide_label
        self.batch_size = data_iter.batch_size
        if hasattr(data_iter, "default_bucket_key"):
            self.default_bucket_key = data_iter.default_bucket_key

    def reset(self):
        self.cur = 0
        if self.reset_internal:
            self.data_iter.reset()

    def iter_next(self):
        if self.cur == self.size:
            return False
        try:
            self.current_batch = self.data_iter.next()
        except StopIteration:
            self.data_iter.reset()
            self.current_batch = self.data_iter.next()
        self.cur += 1
        return True

def _prefetch_loop(ref, i):
    """Thread body of PrefetchingIter: fetch one batch of iterator ``i`` each time it is taken."""
    while True:
        ref.data_taken[i].wait()
        if not ref.started:
            break
        try:
            ref.next_batch[i] = ref.iters[i].next()
        except StopIteration:
            ref.next_batch[i] = None
        except BaseException as err:  # noqa: BLE001 - handed to the consumer thread
            ref.next_batch[i] = None
            ref.errors[i] = err
        ref.data_taken[i].clear()
        ref.data_ready[i].set()


class PrefetchingIter(_BatchHolder):
    """Reads the next batch of each wrapped iterator on its own thread while the current one is
    used; the batches of all iterators are joined into one (data and labels concatenated)."""

    def __init__(self, iters, rename_data=None, rename_label=None):
        super().__init__()
        if not isinstance(iters, list):
            iters = [iters]
        self.n_iter = len(iters)
        if self.n_iter == 0:
            raise ValueError("PrefetchingIter: iters must hold at least one iterator")
        self.iters = iters
        self.rename_data = rename_data
        self.rename_label = rename_label
        self.batch_size = self.provide_data[0][1][0]
        self.data_ready = [threading.Event() for _ in range(self.n_iter)]
        self.data_taken = [threading.Event() for _ in range(self.n_iter)]
        for event in self.data_taken:
            event.set()
        self.started = True
        self.current_batch = None
        self.next_batch = [None] * self.n_iter
        self.errors = [None] * self.n_iter
        self.prefetch_threads = [threading.Thread(target=_prefetch_loop, args=(self, i), daemon=True)
                                 for i in range(self.n_iter)]
        for thread in self.prefetch_threads:
            thread.start()

    def __del__(self):
        self.close()

    def close(self):
        """Stop the prefetch threads (also done by ``__del__``)."""
        if not getattr(self, "started", False):
            return
        self.started = False
        for event in self.data_taken:
            event.set()
        for thread in self.prefetch_threads:
            if thread is not threading.current_thread():
                thread.join()

    @staticmethod
    def _renamed(descs_per_iter, renames):
        if renames is None:
            return sum(descs_per_iter, [])
        return sum([[DataDesc(r[x.name], x.shape, x.dtype) if isinstance(x, DataDesc) else DataDesc(*x)
                     for x in descs] for r, descs in zip(renames, descs_per_iter)], [])

    @property
    def provide_data(self):
        return self._renamed([i.provide_data for i in self.iters], self.rename_data)

    @property
    def provide_label(self):
        return self._renamed([i.provide_label for i in self.iters], self.rename_label)

    def _raise_errors(self):
        for i, err in enumerate(self.errors):
            if err is not None:
                self.errors[i] = None
                raise err

    def reset(self):
        for event in self.data_ready:
            event.wait()
        for it in self.iters:
            it.reset()
        for event in self.data_ready:
            event.clear()
        for event in self.data_taken:
            event.set()

    def iter_next(self):
        for event in self.data_ready:
            event.wait()
        self._raise_errors()
        if self.next_batch[0] is None:
            for batch in self.next_batch:
                if batch is not None:
                    raise MXNetError("PrefetchingIter: number of entry mismatches between iterators")
            return False
        for batch in self.next_batch:
            if batch is None or batch.pad != self.next_batch[0].pad:
                raise MXNetError("PrefetchingIter: number of entry mismatches between iterators")
        first = self.next_batch[0]
        self.current_batch = DataBatch(sum([list(b.data) for b in self.next_batch], []),
                                       sum([list(b.label or []) for b in self.next_batch], []),
                                       first.pad, first.index, provide_data=self.provide_data,
                                       provide_label=self.provide_label)
        for event in self.data_ready:
            event.clear()
        for event in self.data_taken:
            event.set()
        return True

    def next(self):
        if self.iter_next():
            return self.current_batch
        raise StopIteration

def _wrap(np_arr, like):
    """A new NDArray holding ``np_arr`` with the dtype and context of ``like``."""
    return NDArray(np.array(np_arr, dtype=like.dtype, order="C"), like.context)


class NDArrayIter(DataIter):
    """Batches over in-memory arrays (numpy, NDArray, a list or a dict of them)."""

    def __init__(self, data, label=None, batch_size=1, shuffle=False, last_batch_handle="pad",
                 data_name="data", label_name="softmax_label", layout="NCHW"):
        super().__init__(batch_size)
        if last_batch_handle not in ("pad", "discard", "roll_over"):
            raise ValueError("NDArrayIter: last_batch_handle must be 'pad', 'discard' or 'roll_over', "
                             "got %r" % (last_batch_handle,))
        if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError("NDArrayIter: batch_size must be a positive integer, got %r" % (batch_size,))
        self.data = _init_data(data, allow_empty=False, default_name=data_name)
        self.label = _init_data(label, allow_empty=True, default_name=label_name)
        self.idx = np.arange(self.data[0][1].shape[0])
        self.shuffle = shuffle
        self.last_batch_handle = last_batch_handle
        self.batch_size = int(batch_size)
        self.cursor = -self.batch_size
        self.num_data = self.idx.shape[0]
        self.layout = layout
        self.reset()
        self.data_list = [x[1] for x in self.data] + [x[1] for x in self.label]
        self.num_source = len(self.data_list)
        self._cache_data = None      # carried-over tail of the last epoch (roll_over)
        self._cache_label = None

    def _descs(self, source):
        axis = self.layout.find("N")
        return [DataDesc(k, tuple(list(v.shape[:axis]) + [self.batch_size] + list(v.shape[axis + 1:])),
                         v.dtype, layout=self.layout) for k, v in source]

    @property
    def provide_data(self):
        return self._descs(self.data)

    @property
    def provide_label(self):
        return self._descs(self.label)

    def hard_reset(self):
        """Start over, dropping any rolled-over samples."""
        if self.shuffle:
            self._shuffle_data()
        self.cursor = -self.batch_size
        self._cache_data = None
        self._cache_label = None

    def reset(self):
        if self.shuffle:
            self._shuffle_data()
        if self.last_batch_handle == "roll_over" and \
                self.num_data - self.batch_size < self.cursor < self.num_data:
            # the incomplete last batch is carried over: start so the first batch completes it
            self.cursor = self.cursor - self.num_data - self.batch_size
        else:
            self.cursor = -self.batch_size

    def iter_next(self):
        self.cursor += self.batch_size
        return self.cursor < self.num_data

    def next(self):
        if not self.iter_next():
            raise StopIteration
        data = self.getdata()
        label = self.getlabel()
        if data[0].shape[self.layout.find("N")] != self.batch_size:
            # an incomplete last batch ends the epoch; roll_over serves it with the next one
            self._cache_data = data
            self._cache_label = label
            raise StopIteration
        return DataBatch(data=data, label=label, pad=self.getpad(), index=None)

    def _getdata(self, data_source, start=None, end=None):
        if start is None and end is None:
            raise ValueError("should at least specify start or end")
        start = start if start is not None else 0
        if end is None:
            end = data_source[0][1].shape[0] if data_source else 0
        axis = self.layout.find("N")
        out = []
        for _, arr in data_source:
            key = [slice(None)] * arr.ndim
            key[axis] = slice(start, end)
            out.append(_wrap(np.asarray(arr)[tuple(key)], arr))
        return out

    def _concat(self, first, second):
        if not first or not second:
            return first if first else second
        if len(first) != len(second):
            raise MXNetError("data source should contain the same size")
        axis = self.layout.find("N")
        return [_wrap(np.concatenate([np.asarray(a), np.asarray(b)], axis=axis), a)
                for a, b in zip(first, second)]

    @staticmethod
    def _tile(data, repeats):
        out = []
        for arr in data:
            reps = [1] * arr.ndim
            reps[0] = repeats
            out.append(_wrap(np.tile(np.asarray(arr), reps), arr))
        return out

    def _batchify(self, data_source):
        if not self.cursor < self.num_data:
            raise MXNetError("DataIter needs reset.")
        if self.last_batch_handle == "roll_over" and -self.batch_size < self.cursor < 0:
            # first batch of an epoch after a rolled-over tail: cached tail + head of the data
            if self._cache_data is None and self._cache_label is None:
                raise MXNetError("NDArrayIter: next epoch should have cached data (roll_over)")
            cache = self._cache_data if self._cache_data is not None else self._cache_label
            if self.cursor + self.batch_size > self.num_data:
                # MXNet fails here too (slice_axis past the end of the data)
                raise MXNetError("NDArrayIter: batch_size (%d) is larger than the data (%d samples); "
                                 "last_batch_handle='roll_over' cannot complete the carried-over batch"
                                 % (self.batch_size, self.num_data))
            second = self._getdata(data_source, end=self.cursor + self.batch_size)
            if self._cache_data is not None:
                self._cache_data = None
            else:
                self._cache_label = None
            return self._concat(cache, second)
        if self.last_batch_handle == "pad" and self.cursor + self.batch_size > self.num_data:
            pad = self.batch_size - self.num_data + self.cursor
            first = self._getdata(data_source, start=self.cursor)
            if pad > self.num_data:
                second = self._tile(self._getdata(data_source, end=self.num_data), pad // self.num_data)
                if pad % self.num_data != 0:
                    second = self._concat(second, self._getdata(data_source, end=pad % self.num_data))
            else:
                second = self._getdata(data_source, end=pad)
            return self._concat(first, second)
        end = min(self.cursor + self.batch_size, self.num_data)
        return self._getdata(data_source, self.cursor, end)

    def getdata(self):
        return self._batchify(self.data)

    def getlabel(self):
        return self._batchify(self.label)

    def getpad(self):
        if self.last_batch_handle == "pad" and self.cursor + self.batch_size > self.num_data:
            return self.cursor + self.batch_size - self.num_data
        if self.last_batch_handle == "roll_over" and -self.batch_size < self.cursor < 0:
            return -self.cursor
        return 0

    def _shuffle_data(self):
        # As MXNet: idx is reshuffled in place and applied to the already shuffled arrays.
        np.random.shuffle(self.idx)
        self.data = _getdata_by_idx(self.data, self.idx)
        self.label = _getdata_by_idx(self.label, self.idx)


# ---------------------------------------------------------------------------------------------
# File iterators (C++ in MXNet)
# ---------------------------------------------------------------------------------------------

def _as_int(name, value, minimum=None):
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise MXNetError("invalid value for %s: %r (expected an integer)" % (name, value)) from None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise MXNetError("invalid value for %s: %r (expected an integer)" % (name, value))
    if minimum is not None and value < minimum:
        raise MXNetError("invalid value for %s: %r (must be >= %d)" % (name, value, minimum))
    return int(value)


def _as_bool(name, value):
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true"):
            return True
        if low in ("0", "false"):
            return False
        raise MXNetError("invalid value for %s: %r (expected a boolean)" % (name, value))
    return bool(value)


def _as_shape(name, value):
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise MXNetError("invalid value for %s: %r (expected a shape tuple)" % (name, value)) from None
    if isinstance(value, (int, np.integer)):
        value = (value,)
    try:
        shape = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise MXNetError("invalid value for %s: %r (expected a shape tuple)" % (name, value)) from None
    if not shape or any(v <= 0 for v in shape):
        raise MXNetError("invalid value for %s: %r (expected positive dimensions)" % (name, value))
    return shape


class MXDataIter(DataIter):
    """Base of the file iterators. As MXNet's wrapper of its C++ iterators, the first batch is read
    at construction to learn ``provide_data``/``provide_label``; subclasses implement
    ``_before_first`` and ``_next_batch`` (a ``(data, label, pad, index)`` numpy tuple or None)."""

    def __init__(self, data_name="data", label_name="softmax_label"):
        super().__init__()
        self._debug_skip_load = False
        self._debug_at_begin = True
        self._current = None
        self.first_batch = None
        self.first_batch = self.next()
        data = self.first_batch.data[0]
        label = self.first_batch.label[0]
        self.provide_data = [DataDesc(data_name, data.shape, data.dtype)]
        self.provide_label = [DataDesc(label_name, label.shape, label.dtype)]
        self.batch_size = data.shape[0]

    def _before_first(self):
        raise NotImplementedError

    def _next_batch(self):
        raise NotImplementedError

    def debug_skip_load(self):
        """Serve the first batch forever (to time a network without the loading cost)."""
        self._debug_skip_load = True
        _LOG.info("Set debug_skip_load to be true, will simply return first batch")

    def reset(self):
        self._debug_at_begin = True
        self.first_batch = None
        self._before_first()

    def _load(self):
        out = self._next_batch()
        if out is None:
            return False
        data, label, pad, index = out
        self._current = DataBatch(data=[array(data, dtype=data.dtype)], label=[array(label, dtype=label.dtype)],
                                  pad=pad, index=index)
        return True

    def next(self):
        if self._debug_skip_load and not self._debug_at_begin and self._current is not None:
            return DataBatch(data=[self.getdata()], label=[self.getlabel()], pad=self.getpad(),
                             index=self.getindex())
        if self.first_batch is not None:
            batch, self.first_batch = self.first_batch, None
            return batch
        self._debug_at_begin = False
        if self._load():
            return self._current
        raise StopIteration

    def iter_next(self):
        # Unlike MXNet (whose iter_next keeps answering True while the constructor's batch is
        # unread), the constructor's batch becomes the current one here.
        if self.first_batch is not None:
            self._current, self.first_batch = self.first_batch, None
            return True
        return self._load()

    def getdata(self):
        return self._current.data[0]

    def getlabel(self):
        return self._current.label[0]

    def getindex(self):
        return self._current.index

    def getpad(self):
        return self._current.pad


def _csv_files(path, what):
    """The files of a CSV argument: the file itself, or every file of a directory (sorted)."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if os.path.isfile(os.path.join(path, f)))
        if not files:
            raise MXNetError("CSVIter: %s directory %r holds no files" % (what, path))
        return files
    if not os.path.isfile(path):
        raise MXNetError("CSVIter: %s file not found: %r" % (what, path))
    return [path]


def _parse_number(text, dtype):
    if np.issubdtype(dtype, np.integer):
        try:
            return int(text)
        except ValueError:
            return int(float(text))
    return float(text)


def _read_csv(path, what, shape, dtype):
    """All rows of one CSV argument as an ``(n,) + shape`` array; every row must hold exactly
    ``prod(shape)`` values (blank lines are skipped, a trailing comma is allowed)."""
    size = int(np.prod(shape))
    chunks = []
    for fname in _csv_files(path, what):
        try:
            with open(fname, "r") as fin:
                text = fin.read()
        except OSError as err:
            raise MXNetError("CSVIter: cannot read %s file %r: %s" % (what, fname, err)) from err
        rows, lines = [], []
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            if line.endswith(","):
                line = line[:-1]
            length = line.count(",") + 1
            if length != size:
                raise MXNetError("CSVIter: %s:%d: the data size in CSV do not match size of shape: "
                                 "specified shape=%s, the csv row-length=%d" % (fname, lineno, shape, length))
            rows.append(line)
            lines.append(lineno)
        if not rows:
            continue
        try:
            with warnings.catch_warnings():  # numpy warns, then stops early, on text it cannot parse
                warnings.simplefilter("error", DeprecationWarning)
                values = np.fromstring(",".join(rows), sep=",", dtype=dtype)
            if values.size != size * len(rows):
                raise ValueError("short read")
        except (ValueError, DeprecationWarning):
            parsed = []
            for row, lineno in zip(rows, lines):
                try:
                    parsed.extend(_parse_number(v.strip(), dtype) for v in row.split(","))
                except ValueError:
                    raise MXNetError("CSVIter: %s:%d: cannot parse %r as %s"
                                     % (fname, lineno, row, np.dtype(dtype).name)) from None
            values = np.array(parsed, dtype=dtype)
        chunks.append(values.reshape((len(rows),) + shape))
    if not chunks:
        return np.zeros((0,) + shape, dtype=dtype)
    return np.concatenate(chunks)


class CSVIter(MXDataIter):
    """Batches of CSV rows, each row reshaped to ``data_shape``. As MXNet's ``BatchLoader``:
    with ``round_batch`` the last batch is completed from the start of the data and the next
    epoch continues after those samples (``reset`` does not rewind); without it the missing rows
    are left as they were in the previous batch and ``pad`` says how many."""

    _DTYPES = {None: np.float32, "None": np.float32, "float32": np.float32, "int32": np.int32,
               "int64": np.int64}

    def __init__(self, *, data_csv, data_shape, batch_size, label_csv="NULL", label_shape=(1,),
                 round_batch=True, dtype=None, prefetch_buffer=4, ctx="gpu", data_name="data",
                 label_name="softmax_label"):
        self._data_shape = _as_shape("data_shape", data_shape)
        self._label_shape = _as_shape("label_shape", label_shape)
        self._batch = _as_int("batch_size", batch_size, minimum=1)
        self._round = _as_bool("round_batch", round_batch)
        key = dtype if dtype is None else np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        if key not in self._DTYPES:
            raise MXNetError("CSVIter: dtype %s is not supported for CSVIter (use float32, int32 or int64)"
                             % (key,))
        dt = np.dtype(self._DTYPES[key])
        self._data = _read_csv(str(data_csv), "data_csv", self._data_shape, dt)
        if label_csv is None or str(label_csv) == "NULL":
            self._label = np.zeros((self._data.shape[0],) + self._label_shape, dtype=dt)
        else:
            self._label = _read_csv(str(label_csv), "label_csv", self._label_shape, dt)
            if self._label.shape[0] != self._data.shape[0]:
                raise MXNetError("CSVIter: label_csv %r has %d rows but data_csv %r has %d"
                                 % (label_csv, self._label.shape[0], data_csv, self._data.shape[0]))
        if self._data.shape[0] == 0:
            raise MXNetError("CSVIter: data_csv %r holds no rows" % (data_csv,))
        lshape = () if self._label_shape == (1,) else self._label_shape
        self._buf_data = np.zeros((self._batch,) + self._data_shape, dtype=dt)
        self._buf_label = np.zeros((self._batch,) + lshape, dtype=dt)
        self._buf_index = np.zeros((self._batch,), dtype=np.uint64)
        self._pos = 0           # next row of the underlying row reader
        self._overflow = 0      # rows taken from the start to complete the last batch
        super().__init__(data_name=data_name, label_name=label_name)

    def _before_first(self):
        if not self._round or self._overflow == 0:
            self._pos = 0
        else:
            self._overflow = 0

    def _take(self, slot, row):
        self._buf_data[slot] = self._data[row]
        self._buf_label[slot] = self._label[row].reshape(self._buf_label.shape[1:])
        self._buf_index[slot] = row

    def _next_batch(self):
        if self._overflow != 0:
            return None
        n = self._data.shape[0]
        top = 0
        while self._pos < n and top < self._batch:
            self._take(top, self._pos)
            self._pos += 1
            top += 1
        if top == 0:
            return None
        pad = 0
        if top < self._batch:
            if self._round:
                self._pos = 0
                while top < self._batch:
                    if self._pos >= n:
                        raise MXNetError("CSVIter: number of input must be bigger than batch size "
                                         "(batch_size=%d, %d rows)" % (self._batch, n))
                    self._take(top, self._pos)
                    self._pos += 1
                    top += 1
                    self._overflow += 1
                pad = self._overflow
            else:
                pad = self._batch - top
        return self._buf_data.copy(), self._buf_label.copy(), pad, self._buf_index.copy()


def _read_idx_file(path, what, ndim):
    """One IDX file (gzip or not) as a uint8 array; the magic number is not checked, as MXNet."""
    if not os.path.isfile(path):
        raise MXNetError("MNISTIter: %s file not found: %r" % (what, path))
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fin:
            raw = fin.read()
    except (OSError, EOFError) as err:
        raise MXNetError("MNISTIter: cannot read %s file %r: %s" % (what, path, err)) from err
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise MXNetError("MNISTIter: %s file %r is truncated (%d bytes)" % (what, path, len(raw)))
    shape = struct.unpack(">%dI" % ndim, raw[4:head])
    body = np.frombuffer(raw, dtype=np.uint8, offset=head)
    if body.size < int(np.prod(shape)):
        raise MXNetError("MNISTIter: %s file %r announces shape %s but holds %d bytes of data"
                         % (what, path, shape, body.size))
    return body[:int(np.prod(shape))].reshape(shape)


def _mt19937(seed):
    """32-bit outputs of ``std::mt19937(seed)`` (numpy's MT19937 with the same init_genrand)."""
    gen = np.random.MT19937(0)
    gen._legacy_seeding(int(seed) & 0xFFFFFFFF)
    while True:
        for v in gen.random_raw(1024):
            yield int(v)


def _std_shuffle(n, seed):
    """The permutation libstdc++'s ``std::shuffle`` (one draw per element, the pre-GCC-11
    ``uniform_int_distribution``) gives with ``std::mt19937(seed)``, as MXNet's MNISTIter does."""
    perm = list(range(n))
    gen = _mt19937(seed)
    for i in range(1, n):
        span = i + 1
        scaling = 0xFFFFFFFF // span
        past = span * scaling
        r = next(gen)
        while r >= past:
            r = next(gen)
        j = r // scaling
        perm[i], perm[j] = perm[j], perm[i]
    return np.asarray(perm, dtype=np.int64)


class MNISTIter(MXDataIter):
    """MNIST IDX files as batches of float32 images scaled by 1/256 (as MXNet's C++ iterator),
    ``(batch, 1, rows, cols)`` or ``(batch, rows*cols)`` with ``flat``; float32 labels. The order
    is shuffled once at construction with ``seed``; an incomplete last batch is dropped."""

    def __init__(self, *, image="./train-images-idx3-ubyte", label="./train-labels-idx1-ubyte",
                 batch_size=128, shuffle=True, flat=False, seed=0, silent=False, num_parts=1, part_index=0,
                 prefetch_buffer=4, ctx="gpu", dtype=None, data_name="data", label_name="softmax_label"):
        self._batch = _as_int("batch_size", batch_size, minimum=1)
        shuffle = _as_bool("shuffle", shuffle)
        flat = _as_bool("flat", flat)
        seed = _as_int("seed", seed)
        num_parts = _as_int("num_parts", num_parts, minimum=1)
        part_index = _as_int("part_index", part_index, minimum=0)
        if part_index >= num_parts:
            raise MXNetError("MNISTIter: part_index (%d) must be smaller than num_parts (%d)"
                             % (part_index, num_parts))
        if dtype not in (None, "None", "float32", np.float32):
            raise MXNetError("MNISTIter: dtype %r is not supported (MNISTIter yields float32)" % (dtype,))
        img = _read_idx_file(str(image), "image", 3)
        lab = _read_idx_file(str(label), "label", 1)

        def part(count):
            return (int(float(count) / num_parts * part_index),
                    int(float(count) / num_parts * (part_index + 1)))

        i0, i1 = part(img.shape[0])
        l0, l1 = part(lab.shape[0])
        img, lab = img[i0:i1], lab[l0:l1]
        if img.shape[0] != lab.shape[0]:
            raise MXNetError("MNISTIter: image file %r holds %d images but label file %r holds %d labels"
                             % (image, img.shape[0], label, lab.shape[0]))
        if self._batch > img.shape[0]:
            raise MXNetError("MNISTIter: batch_size (%d) is larger than the number of images (%d)"
                             % (self._batch, img.shape[0]))
        images = img.astype(np.float32) * np.float32(1.0 / 256.0)
        labels = lab.astype(np.float32)
        if shuffle:
            perm = _std_shuffle(images.shape[0], seed)
            images, labels = images[perm], labels[perm]
        rows, cols = images.shape[1], images.shape[2]
        if flat:
            self._images = images.reshape(images.shape[0], rows * cols)
        else:
            self._images = images.reshape(images.shape[0], 1, rows, cols)
        self._labels = labels
        self._loc = 0
        if not silent:
            shape = (self._batch, rows * cols) if flat else (self._batch, 1, rows, cols)
            _LOG.info("MNISTIter: load %d images, shuffle=%d, shape=%s", images.shape[0], int(shuffle), shape)
        super().__init__(data_name=data_name, label_name=label_name)

    def _before_first(self):
        self._loc = 0

    def _next_batch(self):
        if self._loc + self._batch > self._images.shape[0]:
            return None
        s = slice(self._loc, self._loc + self._batch)
        self._loc += self._batch
        # MXNet's MNIST batches carry an all-zero index
        return self._images[s], self._labels[s], 0, np.zeros(self._batch, dtype=np.uint64)


def _unsupported(name, hint):
    def creator(*args, **kwargs):
        raise NotImplementedError("mx.io.%s is not implemented in kiln. %s" % (name, hint))
    creator.__name__ = name
    creator.__doc__ = "Not implemented in kiln: %s" % hint
    return creator


_RECORD_HINT = ("Use mx.gluon.data.vision.ImageRecordDataset (with transforms) and "
                "mx.gluon.data.DataLoader, which read the same .rec/.idx files.")
ImageRecordIter = _unsupported("ImageRecordIter", _RECORD_HINT)
ImageRecordIter_v1 = _unsupported("ImageRecordIter_v1", _RECORD_HINT)
ImageRecordUInt8Iter = _unsupported("ImageRecordUInt8Iter", _RECORD_HINT)
ImageRecordUInt8Iter_v1 = _unsupported("ImageRecordUInt8Iter_v1", _RECORD_HINT)
ImageRecordInt8Iter = _unsupported("ImageRecordInt8Iter", _RECORD_HINT)
ImageDetRecordIter = _unsupported("ImageDetRecordIter", _RECORD_HINT)
LibSVMIter = _unsupported("LibSVMIter", "It yields CSR (sparse) batches and kiln has no CSRNDArray; "
                                        "load the data densely and use mx.io.NDArrayIter.")
