"""Multi-process KVStores over MPI (mpi4py): ``dist_sync``, ``dist_device_sync``, ``dist_async``.

MXNet runs separate parameter-server processes; kiln maps the same semantics onto MPI:

- ``dist_sync`` / ``dist_device_sync``: every worker keeps a replica of every stored value.
  ``init`` broadcasts rank 0's value; ``push`` sums the pushed values locally, then over
  all workers (allreduce), and applies the updater (``set_optimizer``) identically on
  every replica, which is what MXNet's server computes, so ``pull`` is local.
- ``dist_async``: rank 0 owns the parameters. A server thread there (on its own
  duplicated communicator) applies each worker's pushed gradient with the optimiser as it
  arrives and answers pulls with the current value. The optimiser travels as kiln's
  pickle-free optimizer-states format (class name + plain attributes), never as a pickle.

Every MPI wait is a non-blocking operation polled against a deadline
(``KILN_DIST_TIMEOUT`` seconds, default 60), so a dead or diverging worker gives an
``MXNetError`` instead of a hang; before each reduction the workers exchange a small
header (operation, key, shape, dtype) and refuse to reduce arrays that do not match.
After such an error the communicator is unusable: the process aborts the MPI job at
exit (``MPI_Abort``) so that no other rank is left waiting.

mpi4py is imported here only, lazily: kiln works without it.
"""
from __future__ import annotations

import atexit
import copy
import hashlib
import json
import logging
import os
import sys
import threading
import time

import numpy as np

from ..base import MXNetError
from ..ndarray import NDArray
from .. import optimizer as opt
from .kvstore import KVStore, key_value_pairs

__all__ = ["create_dist", "DistSyncKVStore", "DistAsyncKVStore", "comm_world", "get_timeout"]

_log = logging.getLogger(__name__)

INSTALL_HINT = ("install MPI and mpi4py: `pip install 'kiln[dist]'` (mpi4py with the mpich wheel), or "
                "`pip install mpi4py` built against your system MPI (e.g. Debian's openmpi-bin libopenmpi-dev)")
HEADER_BYTES = 256
DEFAULT_TIMEOUT = 60.0

_MPI = None
_world = None
_init_lock = threading.Lock()
_broken = []  # reasons the MPI state is unusable; non-empty -> MPI_Abort at exit


def mpi():
    """The ``mpi4py.MPI`` module, with MPI initialised for threads (the async server needs them)."""
    global _MPI
    if _MPI is None:
        with _init_lock:
            if _MPI is None:
                try:
                    import mpi4py
                except ImportError:
                    raise MXNetError("distributed training needs mpi4py, which is not installed: "
                                     + INSTALL_HINT) from None
                if "mpi4py.MPI" not in sys.modules:
                    mpi4py.rc.thread_level = "multiple"
                try:
                    from mpi4py import MPI
                except (ImportError, RuntimeError) as err:
                    raise MXNetError("mpi4py is installed but MPI could not be loaded (%s): %s"
                                     % (err, INSTALL_HINT)) from None
                _MPI = MPI
    return _MPI


def get_timeout():
    """Seconds any distributed wait may take before it is an error (``KILN_DIST_TIMEOUT``)."""
    value = os.environ.get("KILN_DIST_TIMEOUT", "").strip()
    if not value:
        return DEFAULT_TIMEOUT
    try:
        t = float(value)
    except ValueError:
        raise MXNetError("KILN_DIST_TIMEOUT=%r is not a number of seconds" % value) from None
    if t <= 0:
        raise MXNetError("KILN_DIST_TIMEOUT must be positive, got %r" % value)
    return t


def _abort_at_exit():
    if _broken and _MPI is not None:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - closed streams must not stop the abort
            pass
        _MPI.COMM_WORLD.Abort(1)


def mark_broken(reason):
    """After a timeout the job cannot finish cleanly: abort it at exit (others may be stuck)."""
    if not _broken:
        atexit.register(_abort_at_exit)
    _broken.append(reason)


_hook_installed = []


def _install_excepthook():
    """An uncaught exception on one worker aborts the whole MPI job (after its traceback)
    instead of leaving the other workers to time out (mpi4py's ``-m mpi4py`` does the same)."""
    if _hook_installed:
        return
    _hook_installed.append(True)
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        if not issubclass(kind, (SystemExit, KeyboardInterrupt)):
            mark_broken("uncaught %s" % kind.__name__)

    sys.excepthook = hook


# numpy dtypes MPI reduces directly; others are reduced in a wider type and cast back
_REDUCE_AS = {np.dtype(np.float16): np.dtype(np.float32), np.dtype(np.bool_): np.dtype(np.int32)}


class Comm:
    """A duplicated MPI communicator whose every operation is non-blocking and polled
    against a deadline; ``what`` strings name the operation in errors."""

    def __init__(self, comm=None, label="kiln"):
        MPI = mpi()
        self.MPI = MPI
        self.comm = (comm if comm is not None else MPI.COMM_WORLD).Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.label = label
        if self.size > 1:
            _install_excepthook()

    # ---- waiting ----
    def wait(self, req, what, timeout=None):
        """Complete ``req`` or raise MXNetError after ``timeout`` seconds (never hang)."""
        if _broken:
            raise MXNetError("%s: %s: MPI is unusable after an earlier failure (%s)" % (self.label, what, _broken[0]))
        timeout = get_timeout() if timeout is None else timeout
        start = time.monotonic()
        spin_until = start + 0.05  # busy-poll briefly: MPI progresses only inside Test
        deadline = start + timeout
        pause = 1e-5
        while True:
            if req.Test():
                return
            now = time.monotonic()
            if now >= deadline:
                try:
                    req.Cancel()
                except Exception:  # noqa: BLE001 - collectives cannot be cancelled
                    pass
                reason = ("%s: timed out after %.1f s in %s on rank %d of %d: a worker died, is stuck, or runs "
                          "different code (KILN_DIST_TIMEOUT sets the limit)"
                          % (self.label, timeout, what, self.rank, self.size))
                mark_broken(reason)
                raise MXNetError(reason)
            if now >= spin_until:
                time.sleep(pause)
                pause = min(pause * 2, 1e-3)

    # ---- collectives ----
    def check_headers(self, op, key, shape, dtype):
        """All workers must be at the same (op, key, shape, dtype) before a reduction."""
        if self.size == 1:
            return
        mine = _header(op, key, shape, dtype)
        rows = np.zeros((self.size, HEADER_BYTES), dtype=np.uint8)
        self.wait(self.comm.Iallgather(np.frombuffer(mine, dtype=np.uint8), rows),
                  "%s of key %r (header exchange)" % (op, key))
        texts = [bytes(r).rstrip(b"\0").decode("utf-8", "replace") for r in rows]
        if len(set(texts)) > 1:
            groups = {}
            for r, t in enumerate(texts):
                groups.setdefault(t, []).append(r)
            detail = "; ".join("ranks %s: %s" % (rs, t) for t, rs in groups.items())
            raise MXNetError("%s: workers disagree in %s of key %r (rank %d has shape %s, dtype %s); "
                             "ranks %s differ from rank 0. Every worker must push the same keys in the same "
                             "order with the same shapes and dtypes. [%s]"
                             % (self.label, op, key, self.rank, tuple(shape), np.dtype(dtype).name,
                                [r for r, t in enumerate(texts) if t != texts[0]], detail))

    def allreduce(self, data, what, average=False):
        """A new numpy array: the element-wise sum (or mean) of ``data`` over all workers."""
        data = np.ascontiguousarray(data)
        work = data.astype(_REDUCE_AS[data.dtype]) if data.dtype in _REDUCE_AS else data
        out = np.empty_like(work)
        if self.size == 1:
            out[...] = work
        else:
            self.wait(self.comm.Iallreduce(work, out, op=self.MPI.SUM), what)
        if average:
            out = out / self.size if out.dtype.kind == "f" else out // self.size
        return out.astype(data.dtype, copy=False)

    def bcast(self, data, root, what):
        """``data`` (a contiguous numpy array, overwritten) takes root's value."""
        if self.size > 1:
            self.wait(self.comm.Ibcast(data, root=root), what)
        return data

    def allgather_rows(self, data, what):
        """Concatenation on axis 0 of every worker's ``data`` (first dims may differ)."""
        data = np.ascontiguousarray(data)
        counts = np.zeros(self.size, dtype=np.int64)
        self.wait(self.comm.Iallgather(np.array([data.shape[0] if data.ndim else 1], dtype=np.int64), counts),
                  what + " (row counts)")
        row = int(np.prod(data.shape[1:], dtype=np.int64)) if data.ndim else 1
        out = np.empty((int(counts.sum()),) + data.shape[1:], dtype=data.dtype)
        if self.size == 1:
            out[...] = data
            return out
        sizes = [int(c) * row for c in counts]
        offsets = [int(sum(sizes[:i])) for i in range(self.size)]
        self.wait(self.comm.Iallgatherv(data, [out, (sizes, offsets)]), what)
        return out

    def barrier(self, what="barrier"):
        if self.size > 1:
            self.wait(self.comm.Ibarrier(), what)


def _header(op, key, shape, dtype):
    text = "%s|%r|%s|%s" % (op, key, "x".join(str(d) for d in shape), np.dtype(dtype).name)
    raw = text.encode("utf-8")
    if len(raw) > HEADER_BYTES:
        digest = hashlib.sha1(raw).hexdigest()
        raw = raw[:HEADER_BYTES - 42] + b"..#" + digest.encode()
    return raw.ljust(HEADER_BYTES, b"\0")


_world_lock = threading.Lock()


def comm_world():
    """kiln's own duplicate of MPI_COMM_WORLD (kept apart from the user's MPI traffic)."""
    global _world
    with _world_lock:
        if _world is None:
            _world = Comm(label="kiln.dist")
    return _world


def _to_numpy(arr):
    """The finished buffer of an NDArray (a read, no copy)."""
    return np.ascontiguousarray(arr._read())


class DistSyncKVStore(KVStore):
    """``dist_sync``: allreduce of the pushed values, the same update on every replica."""

    def __init__(self, kvtype="dist_sync"):
        super().__init__(kvtype)
        self._comm = Comm(label=kvtype)

    @property
    def rank(self):
        return self._comm.rank

    @property
    def num_workers(self):
        return self._comm.size

    def _initial_value(self, key, value):
        buf = np.array(_to_numpy(value), copy=True)
        self._comm.check_headers("init", key, buf.shape, buf.dtype)
        self._comm.bcast(buf, 0, "init of key %r" % (key,))
        return NDArray(buf, value.context)

    def _reduce(self, key, values, stored):
        local = super()._reduce(key, values, stored)
        if self._comm.size == 1:
            return local
        self._comm.check_headers("push", key, stored.shape, stored.dtype)
        summed = self._comm.allreduce(_to_numpy(local), "push of key %r" % (key,))
        return NDArray(summed, stored.context)

    def _barrier(self):
        self._comm.barrier("KVStore barrier")

    def set_gradient_compression(self, compression_params):
        raise NotImplementedError("KVStore.set_gradient_compression (%r): kiln's dist stores do not compress "
                                  "gradients" % (compression_params,))


# ---- dist_async ----
_OWNER = 0
_TAG_REQ, _TAG_DATA, _TAG_REPLY, _TAG_REPLY_DATA = 11, 12, 13, 14


def encode_optimizer(optimizer):
    """The optimiser as kiln's pickle-free states bytes (class name + plain attributes);
    per-Parameter lr/wd multipliers are folded into its by-index tables first."""
    o = copy.copy(optimizer)
    o.lr_mult, o.wd_mult = dict(optimizer.lr_mult), dict(optimizer.wd_mult)
    for idx, param in getattr(optimizer, "param_dict", {}).items():
        o.lr_mult[idx] = getattr(param, "lr_mult", 1.0)
        o.wd_mult[idx] = getattr(param, "wd_mult", 1.0)
    o.param_dict = {}
    return opt.Updater(o).get_states(dump_optimizer=True)


def decode_optimizer(blob):
    """An Updater holding the optimiser that ``encode_optimizer`` wrote."""
    upd = opt.Updater(opt.create("sgd"))
    upd.set_states(blob)
    upd.aggregate_updates = upd.optimizer.aggregate_num > 0
    return upd


class _Owner:
    """Rank 0's parameter store for dist_async: applies pushes as they come, answers pulls."""

    def __init__(self, comm):
        self.comm = comm
        self.lock = threading.Lock()
        self.store = {}
        self.updater = None
        self.byes = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="kiln-dist-async-owner", daemon=True)
        self.thread.start()

    # operations (called under the lock, from the server thread or rank 0's own calls)
    def handle(self, head, payload, source):
        op, key = head["op"], head.get("key")
        if op == "init":
            if key not in self.store:
                self.store[key] = NDArray(payload, None)
            return {}, None
        if op == "bye":
            self.byes.add(source)
            return {}, None
        stored = self.store.get(key)
        if stored is None:
            raise MXNetError("dist_async: key %r has not been initialized on the parameter owner" % (key,))
        if op == "pull":
            return {"shape": list(stored.shape), "dtype": np.dtype(stored.dtype).name}, _to_numpy(stored)
        if op == "push":
            if tuple(payload.shape) != stored.shape or payload.dtype != np.dtype(stored.dtype):
                raise MXNetError("dist_async: rank %d pushed key %r with shape %s dtype %s, but it holds shape %s "
                                 "dtype %s" % (source, key, payload.shape, payload.dtype.name, stored.shape,
                                               np.dtype(stored.dtype).name))
            grad = NDArray(payload, stored.context)
            if self.updater is not None:
                self.updater(key, grad, stored)
            else:
                grad.copyto(stored)
            stored.wait_to_read()
            return {}, None
        raise MXNetError("dist_async: unknown request %r" % (op,))

    def _serve(self):
        MPI, comm = self.comm.MPI, self.comm.comm
        while not self.stop.is_set():
            status = MPI.Status()
            if not comm.Iprobe(source=MPI.ANY_SOURCE, tag=_TAG_REQ, status=status):
                time.sleep(1e-4)
                continue
            source = status.Get_source()
            raw = np.empty(status.Get_count(MPI.BYTE), dtype=np.uint8)
            comm.Recv(raw, source=source, tag=_TAG_REQ)
            try:
                head = json.loads(bytes(raw).decode("utf-8"))
                payload = None
                if head.get("nbytes") is not None:
                    payload = np.empty(head["shape"], dtype=np.dtype(head["dtype"]))
                    self.comm.wait(comm.Irecv(payload, source=source, tag=_TAG_DATA),
                                   "receiving %s of key %r from rank %d" % (head["op"], head.get("key"), source))
                with self.lock:
                    reply, data = self.handle(head, payload, source)
            except MXNetError as err:
                if _broken:
                    _log.error("dist_async owner stops: %s", err)
                    return
                reply, data = {"error": str(err)}, None
            except Exception as err:  # noqa: BLE001 - report to the worker instead of dying silently
                _log.exception("dist_async owner failed on a request from rank %d", source)
                reply, data = {"error": "%s: %s" % (type(err).__name__, err)}, None
            if data is not None:
                reply["nbytes"] = int(data.nbytes)
            try:
                self.comm.wait(comm.Isend(np.frombuffer(json.dumps(reply).encode(), dtype=np.uint8), dest=source,
                                          tag=_TAG_REPLY), "replying to rank %d" % source)
                if data is not None:
                    self.comm.wait(comm.Isend(data, dest=source, tag=_TAG_REPLY_DATA), "replying to rank %d" % source)
            except MXNetError as err:
                _log.error("dist_async owner stops: %s", err)
                return

    def close(self, num_workers, timeout):
        """Serve until every other worker has said goodbye (or ``timeout`` passes), then stop."""
        deadline = time.monotonic() + timeout
        while len(self.byes) < num_workers - 1 and time.monotonic() < deadline and self.thread.is_alive():
            time.sleep(1e-3)
        if len(self.byes) < num_workers - 1:
            _log.error("dist_async: ranks %s did not finish within %.1f s; the parameter owner stops anyway",
                       sorted(set(range(1, num_workers)) - self.byes), timeout)
        self.stop.set()
        self.thread.join(timeout=5)


class DistAsyncKVStore(KVStore):
    """``dist_async``: rank 0 owns the values; pushes update them there as they arrive."""

    def __init__(self, kvtype="dist_async"):
        super().__init__(kvtype)
        MPI = mpi()
        if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
            raise MXNetError("dist_async needs MPI initialised with MPI_THREAD_MULTIPLE (got level %d); import "
                             "kiln's dist store before mpi4py.MPI or set mpi4py.rc.thread_level='multiple'"
                             % MPI.Query_thread())
        self._comm = Comm(label=kvtype)          # owner <-> worker messages
        self._sync = Comm(label=kvtype)          # barriers between workers
        self._owner = _Owner(self._comm) if self._comm.rank == _OWNER else None
        self._shapes = {}
        self._closed = False
        atexit.register(self.close)

    @property
    def rank(self):
        return self._comm.rank

    @property
    def num_workers(self):
        return self._comm.size

    def _request(self, head, payload=None):
        """Send one request to the owner and return (reply, reply payload)."""
        what = "%s of key %r" % (head["op"], head.get("key"))
        if payload is not None:
            payload = np.ascontiguousarray(payload)
            head = dict(head, shape=list(payload.shape), dtype=payload.dtype.name, nbytes=int(payload.nbytes))
        if self._owner is not None:
            with self._owner.lock:
                return self._owner.handle(head, payload, self.rank)
        comm = self._comm
        comm.wait(comm.comm.Isend(np.frombuffer(json.dumps(head).encode(), dtype=np.uint8), dest=_OWNER,
                                  tag=_TAG_REQ), what)
        if payload is not None:
            comm.wait(comm.comm.Isend(payload, dest=_OWNER, tag=_TAG_DATA), what)
        status = comm.MPI.Status()
        deadline = time.monotonic() + get_timeout()
        while not comm.comm.Iprobe(source=_OWNER, tag=_TAG_REPLY, status=status):
            if time.monotonic() > deadline:
                reason = ("%s: timed out after %.1f s waiting for the parameter owner (rank 0) to answer %s"
                          % (self.type, get_timeout(), what))
                mark_broken(reason)
                raise MXNetError(reason)
            time.sleep(5e-5)
        raw = np.empty(status.Get_count(comm.MPI.BYTE), dtype=np.uint8)
        comm.wait(comm.comm.Irecv(raw, source=_OWNER, tag=_TAG_REPLY), what)
        reply = json.loads(bytes(raw).decode("utf-8"))
        if "error" in reply:
            raise MXNetError(reply["error"])
        data = None
        if reply.get("nbytes") is not None:
            data = np.empty(reply["shape"], dtype=np.dtype(reply["dtype"]))
            comm.wait(comm.comm.Irecv(data, source=_OWNER, tag=_TAG_REPLY_DATA), what)
        return reply, data

    def init(self, key, value):
        """Rank 0's value becomes the owner's; every worker waits until it is there."""
        for k, values in key_value_pairs(key, value, "init"):
            self._check_kind(k, "init")
            if k in self._shapes:
                raise MXNetError("KVStore.init: key %r is already initialized" % (k,))
            v = values[0]
            self._shapes[k] = (v.shape, np.dtype(v.dtype))
            if self.rank == _OWNER:
                self._request({"op": "init", "key": k}, np.array(_to_numpy(v), copy=True))
        self._sync.barrier("init (waiting for rank 0's values)")

    def _known(self, key, values, what):
        self._check_kind(key, what)
        if key not in self._shapes:
            raise MXNetError("KVStore.%s: key %r has not been initialized (call init first)" % (what, key))
        shape = self._shapes[key][0]
        for i, v in enumerate(values):
            if v.shape != shape:
                raise MXNetError("KVStore.%s: key %r holds shape %s, but value %d has shape %s"
                                 % (what, key, shape, i, v.shape))

    def push(self, key, value, priority=0):
        """Send the local sum of the values to the owner, which applies it at once."""
        for k, values in key_value_pairs(key, value, "push"):
            self._known(k, values, "push")
            dtype = self._shapes[k][1]
            total = values[0].astype(dtype, copy=True)
            for v in values[1:]:
                total += v.astype(dtype, copy=False)
            self._request({"op": "push", "key": k}, _to_numpy(total))

    def pull(self, key, out=None, priority=0, ignore_sparse=True):
        """Copy the owner's current value into every output."""
        if out is None:
            raise MXNetError("KVStore.pull: out is required (the arrays to copy the stored values into)")
        for k, outs in key_value_pairs(key, out, "pull"):
            self._known(k, outs, "pull")
            _, data = self._request({"op": "pull", "key": k})
            for o in outs:
                o[:] = data

    def set_optimizer(self, optimizer):
        """Install the optimiser on the owner (sent as data by rank 0, as MXNet does)."""
        if self.rank == _OWNER:
            upd = decode_optimizer(encode_optimizer(optimizer))
            with self._owner.lock:
                self._owner.updater = upd
        self._sync.barrier("set_optimizer")

    def _set_updater(self, updater):
        raise MXNetError("dist_async runs the optimiser on the parameter owner: use set_optimizer, a Python "
                         "updater function cannot be sent there")

    set_updater = _set_updater

    def save_optimizer_states(self, fname, dump_optimizer=False):
        if self.rank != _OWNER:
            raise MXNetError("dist_async: optimizer states live on rank 0; save them there")
        if self._owner.updater is None:
            raise MXNetError("KVStore.save_optimizer_states: no optimizer was set (set_optimizer)")
        with self._owner.lock, open(fname, "wb") as f:
            f.write(self._owner.updater.get_states(dump_optimizer))

    def load_optimizer_states(self, fname):
        if self.rank == _OWNER:
            if self._owner.updater is None:
                raise MXNetError("KVStore.load_optimizer_states: no optimizer was set (set_optimizer)")
            with open(fname, "rb") as f, self._owner.lock:
                self._owner.updater.set_states(f.read())
        self._sync.barrier("load_optimizer_states")

    @property
    def _updater(self):
        return self._owner.updater if self._owner is not None else None

    @_updater.setter
    def _updater(self, value):
        pass  # KVStore.__init__ sets None; the owner holds the real updater

    def _barrier(self):
        self._sync.barrier("KVStore barrier")

    def set_gradient_compression(self, compression_params):
        raise NotImplementedError("KVStore.set_gradient_compression (%r): kiln's dist stores do not compress "
                                  "gradients" % (compression_params,))

    def close(self):
        """Say goodbye to the owner; the owner serves until every worker has (at exit too)."""
        if self._closed:
            return
        self._closed = True
        if _broken:
            return
        try:
            if self._owner is not None:
                self._owner.close(self.num_workers, get_timeout())
            else:
                self._request({"op": "bye"})
        except MXNetError as err:
            _log.error("%s: closing: %s", self.type, err)


def create_dist(name):
    """A ``dist_*`` store (``dist_sync``, ``dist_device_sync``: synchronous; ``dist_async``)."""
    if name in ("dist_sync", "dist_device_sync", "dist_sync_device", "dist"):
        return DistSyncKVStore(name)
    if name == "dist_async":
        return DistAsyncKVStore(name)
    raise MXNetError("unknown distributed KVStore type %r (dist_sync, dist_device_sync, dist_async)" % name)
