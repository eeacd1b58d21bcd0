"""DataLoader: batches of a Dataset, optionally prepared by worker processes or threads.

Worker processes are started with the 'spawn' method, never 'fork'. kiln's
compiled kernels run their parallel loops on libgomp, whose thread pool does
not survive a fork (a forked child that runs a parallel kernel can hang), and
kiln's dependency engine keeps worker threads that a forked child would not
have. A spawned worker is a fresh interpreter, so transforms in it may use any
kiln operator. The price, as on MXNet for Windows/macOS: the dataset and
``batchify_fn`` are pickled to the workers (module-level functions and
classes, not lambdas), and a script must guard its entry point with
``if __name__ == '__main__':``. ``thread_pool=True`` has no such limits.

Batches travel back through the pool's pipe: NDArrays are reduced to their
numpy buffer and context (``ForkingPickler`` reducer below) and rebuilt in the
parent; only objects made by our own worker processes are ever unpickled.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.pool
import os
import signal
import threading
from multiprocessing.reduction import ForkingPickler

import numpy as np

from . import sampler as _sampler
from ... import ndarray as nd
from ...base import MXNetError
from ...context import Context, cpu_pinned

__all__ = ["DataLoader", "default_batchify_fn", "default_mp_batchify_fn"]

log = logging.getLogger(__name__)


def _rebuild_ndarray(data, device_type, device_id):
    return nd.NDArray(data, Context(device_type, device_id))


def _reduce_ndarray(arr):
    ctx = arr.context
    return _rebuild_ndarray, (np.asarray(arr), ctx.device_type, ctx.device_id)


ForkingPickler.register(nd.NDArray, _reduce_ndarray)


def default_batchify_fn(data):
    """Stack samples into a batch: NDArrays with ``nd.stack``, tuples field by field (a list of
    batches), anything else through ``np.asarray`` into an NDArray of numpy's dtype (so float64
    stays float64 and Python ints give int64, as MXNet)."""
    if isinstance(data[0], nd.NDArray):
        return nd.stack(*data)
    if isinstance(data[0], tuple):
        return [default_batchify_fn(field) for field in zip(*data)]
    data = np.asarray(data)
    return nd.array(data, dtype=data.dtype)


def default_mp_batchify_fn(data):
    """``default_batchify_fn`` for worker processes: arrays in context ``cpu_shared(0)``, as
    MXNet's (kiln copies them through the pipe rather than sharing memory)."""
    batch = default_batchify_fn(data)
    return _as_in_context(batch, Context("cpu_shared", 0))


def _as_in_context(data, ctx):
    if isinstance(data, nd.NDArray):
        return data.as_in_context(ctx)
    if isinstance(data, (list, tuple)):
        return [_as_in_context(d, ctx) for d in data]
    return data


_worker_dataset = None


def _worker_initializer(dataset, kernel_threads):
    """Runs once in each worker process: keep the dataset, and give kernels few threads so
    that workers do not oversubscribe the cores (MXNET_MP_WORKER_NTHREADS, as MXNet)."""
    global _worker_dataset
    _worker_dataset = dataset
    os.environ.setdefault("KILN_NUM_THREADS", str(kernel_threads))


def _worker_fn(samples, batchify_fn):
    return batchify_fn([_worker_dataset[i] for i in samples])


def _thread_worker_fn(samples, batchify_fn, dataset):
    return batchify_fn([dataset[i] for i in samples])


def _check_picklable(obj, what, num_workers):
    try:
        ForkingPickler.dumps(obj)
    except Exception as err:  # noqa: BLE001 - any pickling failure gets the same explanation
        raise MXNetError(
            "DataLoader(num_workers=%d) sends the %s to worker processes started with 'spawn' (kiln's kernels "
            "are not fork-safe), so it must be picklable, but pickling failed: %s: %s. Use module-level "
            "functions and classes instead of lambdas or local functions, or pass thread_pool=True."
            % (num_workers, what, type(err).__name__, err)) from err


class _MultiWorkerIter:
    """Hands batches of indices to the pool ``prefetch`` ahead and returns results in order."""

    def __init__(self, worker_pool, batchify_fn, batch_sampler, pin_memory, pin_device_id, prefetch,
                 dataset, timeout, data_loader):
        self._worker_pool = worker_pool
        self._batchify_fn = batchify_fn
        self._batch_sampler = batch_sampler
        self._data_buffer = {}
        self._rcvd_idx = 0
        self._sent_idx = 0
        self._iter = iter(batch_sampler)
        self._pin_memory = pin_memory
        self._pin_device_id = pin_device_id
        self._dataset = dataset  # None for processes: they hold their own copy
        self._timeout = timeout
        self._data_loader = data_loader  # keeps the pool alive while iterating
        for _ in range(prefetch):
            self._push_next()

    def __len__(self):
        return len(self._batch_sampler)

    def _push_next(self):
        r = next(self._iter, None)
        if r is None:
            return
        if self._dataset is None:
            res = self._worker_pool.apply_async(_worker_fn, (r, self._batchify_fn))
        else:
            res = self._worker_pool.apply_async(_thread_worker_fn, (r, self._batchify_fn, self._dataset))
        self._data_buffer[self._sent_idx] = res
        self._sent_idx += 1

    def __next__(self):
        self._push_next()
        if self._rcvd_idx == self._sent_idx:
            raise StopIteration
        res = self._data_buffer.pop(self._rcvd_idx)
        try:
            batch = res.get(self._timeout)
        except multiprocessing.TimeoutError:
            msg = ("DataLoader worker timed out after %s seconds on batch %d: a slow transform (raise `timeout`), "
                   "or a worker process that died" % (self._timeout, self._rcvd_idx))
            log.warning(msg)
            raise multiprocessing.TimeoutError(msg) from None
        except Exception:
            # as MXNet: a failed batch stops the pool; the worker's exception propagates unchanged
            self._worker_pool.terminate()
            raise
        if self._pin_memory:
            batch = _as_in_context(batch, cpu_pinned(self._pin_device_id))
        self._rcvd_idx += 1
        return batch

    next = __next__

    def __iter__(self):
        return self


class DataLoader:
    """Loads mini-batches from a dataset (MXNet 1.9's ``gluon.data.DataLoader``).

    Give either ``batch_size`` (with ``shuffle`` or a ``sampler``, and ``last_batch`` 'keep',
    'discard' or 'rollover') or a ``batch_sampler``. ``num_workers > 0`` prepares batches in
    that many spawned processes (or threads with ``thread_pool=True``), ``prefetch`` batches
    ahead (default ``2 * num_workers``); a batch not ready within ``timeout`` seconds raises
    ``multiprocessing.TimeoutError``, and an exception in a worker is raised here unchanged.
    """

    def __init__(self, dataset, batch_size=None, shuffle=False, sampler=None, last_batch=None,
                 batch_sampler=None, batchify_fn=None, num_workers=0, pin_memory=False, pin_device_id=0,
                 prefetch=None, thread_pool=False, timeout=120, auto_reload=False):
        self._worker_pool = None
        self._dataset = dataset
        self._pin_memory = pin_memory
        self._pin_device_id = pin_device_id
        self._thread_pool = thread_pool
        if not timeout > 0:
            raise ValueError("timeout must be positive, given %s" % (timeout,))
        self._timeout = timeout
        if batch_sampler is None:
            if batch_size is None:
                raise ValueError("batch_size must be specified unless batch_sampler is specified")
            if sampler is None:
                sampler = _sampler.RandomSampler(len(dataset)) if shuffle else _sampler.SequentialSampler(len(dataset))
            elif shuffle:
                raise ValueError("shuffle must not be specified if sampler is specified")
            batch_sampler = _sampler.BatchSampler(sampler, batch_size, last_batch if last_batch else "keep")
        elif batch_size is not None or shuffle or sampler is not None or last_batch is not None:
            raise ValueError("batch_size, shuffle, sampler and last_batch must not be specified if batch_sampler "
                             "is specified.")
        self._batch_sampler = batch_sampler
        self._num_workers = num_workers if num_workers >= 0 else 0
        self._prefetch = max(0, int(prefetch) if prefetch is not None else 2 * self._num_workers)
        if batchify_fn is None:
            batchify_fn = default_mp_batchify_fn if num_workers > 0 else default_batchify_fn
        self._batchify_fn = batchify_fn
        if self._num_workers > 0:
            nd.waitall()  # arrays handed to workers must be complete
            if self._thread_pool:
                self._worker_pool = multiprocessing.pool.ThreadPool(self._num_workers)
            else:
                self._worker_pool = self._start_processes()
        self.auto_reload = auto_reload
        self._iter = None
        if self.auto_reload:
            self.refresh()

    def _start_processes(self):
        _check_picklable(self._dataset, "dataset", self._num_workers)
        _check_picklable(self._batchify_fn, "batchify_fn", self._num_workers)
        threads = int(os.environ.get("MXNET_MP_WORKER_NTHREADS", "1"))
        ctx = multiprocessing.get_context("spawn")
        # workers ignore Ctrl-C (the disposition survives exec); the parent handles it and cleans up
        in_main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main else None
        try:
            return ctx.Pool(self._num_workers, initializer=_worker_initializer, initargs=(self._dataset, threads))
        finally:
            if in_main:
                signal.signal(signal.SIGINT, old)

    def __iter__(self):
        if self._iter is None:
            self.refresh()
        t = self._iter
        self._iter = None  # one prefetched iterator serves one loop
        for item in t:
            yield item
        if self._iter is None and self.auto_reload:
            self.refresh()

    def _prefetch_iter(self):
        if self._num_workers == 0:
            return self._same_process_iter()
        return _MultiWorkerIter(self._worker_pool, self._batchify_fn, self._batch_sampler, self._pin_memory,
                                self._pin_device_id, self._prefetch,
                                self._dataset if self._thread_pool else None, self._timeout, self)

    def _same_process_iter(self):
        for batch in self._batch_sampler:
            ret = self._batchify_fn([self._dataset[idx] for idx in batch])
            if self._pin_memory:
                ret = _as_in_context(ret, cpu_pinned(self._pin_device_id))
            yield ret

    def __len__(self):
        return len(self._batch_sampler)

    def refresh(self):
        """Start a new (prefetching) iterator now rather than at the next ``iter()``."""
        self._iter = self._prefetch_iter()

    def clean(self):
        """Drop the prefetched iterator; the next ``iter()`` starts afresh."""
        self._iter = None

    def __del__(self):
        pool = getattr(self, "_worker_pool", None)
        if pool is not None:
            pool.terminate()
            self._worker_pool = None
