"""The dependency engine: imperative operations run asynchronously, in order per array.

Like MXNet's threaded engine, every operation is pushed with the variables it
reads and the variables it writes; an operation starts once every earlier
writer of what it reads, and every earlier reader and writer of what it
writes, has finished. Independent operations may overlap, and the Python
thread returns as soon as an operation is queued. Reading a value from Python
(``wait_to_read``, ``asnumpy``, printing) waits for its writers; ``waitall``
waits for everything.

An exception inside an operation does not reach the thread that pushed it:
it is stored on the variables the operation writes, passed on to operations
that read them, and raised at the next wait on one of them (or at
``waitall``), after which the engine keeps running.

A small operation pushed while nothing else is queued or running runs at
once on the pushing thread (``inline=True``): handing a 10-element kernel to
a worker costs more than running it, and with nothing in flight no ordering
can differ. Failures still wait for the next wait. ``KILN_ENGINE_INLINE=0``
sends everything to the workers.

``MXNET_ENGINE_TYPE=NaiveEngine`` (or ``KILN_ENGINE_TYPE``) runs every
operation synchronously on the pushing thread, as MXNet's NaiveEngine does,
for debugging. ``MXNET_CPU_WORKER_NTHREADS`` sets the number of workers
(default 1: each kernel is already multi-threaded inside).
"""
from __future__ import annotations

import atexit
import collections
import logging
import os
import queue
import threading

log = logging.getLogger(__name__)


class _Failure:
    """One failed operation's exception, shared by every variable it poisoned."""

    __slots__ = ("error", "reported")

    def __init__(self, error):
        self.error = error
        self.reported = False


class Var:
    """Readers-writer FIFO for one piece of storage (views share their base's Var)."""

    __slots__ = ("pending", "reads", "writing", "failure", "__weakref__")

    def __init__(self):
        self.pending = collections.deque()  # (op, is_write) not yet granted
        self.reads = 0  # granted readers still running
        self.writing = False
        self.failure = None

    def idle(self):
        return not self.pending and not self.reads and not self.writing


class _Op:
    __slots__ = ("fn", "reads", "writes", "wait", "name", "always")

    def __init__(self, fn, reads, writes, name, always):
        self.fn = fn
        self.always = always  # runs even when an input failed (waits must wake up)
        self.reads = reads
        self.writes = writes
        self.wait = 1 + len(reads) + len(writes)
        self.name = name


class Engine:
    def __init__(self, num_workers=1, naive=False, inline_elements=0):
        self.naive = naive
        self.inline_elements = inline_elements  # what callers may mark inline=True
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._failures = []
        self._ready = queue.SimpleQueue()
        self._workers = []
        if not naive:
            for i in range(max(1, num_workers)):
                t = threading.Thread(target=self._work, name="kiln-engine-%d" % i, daemon=True)
                t.start()
                self._workers.append(t)

    # ---- pushing ----
    def push(self, fn, reads=(), writes=(), name="op", always=False, inline=False):
        """Run ``fn()`` once ``reads`` and ``writes`` (Vars) allow it; returns at once
        (``inline``: small enough to run here if the engine is otherwise idle)."""
        writes = _unique(writes)
        reads = [v for v in _unique(reads) if all(v is not w for w in writes)]
        op = _Op(fn, reads, writes, name, always)
        if self.naive:
            with self._lock:
                self._in_flight += 1
            self._execute(op)
            return
        ready = []
        with self._lock:
            self._in_flight += 1
            for v in reads:
                if not v.writing and not v.pending:
                    v.reads += 1
                    op.wait -= 1
                else:
                    v.pending.append((op, False))
            for v in writes:
                if not v.writing and not v.reads and not v.pending:
                    v.writing = True
                    op.wait -= 1
                else:
                    v.pending.append((op, True))
            op.wait -= 1
            if op.wait == 0:
                if inline and self._in_flight == 1:
                    inline = "now"
                else:
                    ready.append(op)
        if inline == "now":
            self._execute(op)
        for r in ready:
            self._ready.put(r)

    def _grant(self, v, ready):
        """Start what ``v``'s queue allows now (caller holds the lock)."""
        while v.pending:
            op, is_write = v.pending[0]
            if is_write:
                if v.reads or v.writing:
                    return
                v.pending.popleft()
                v.writing = True
                self._signal(op, ready)
                return
            if v.writing:
                return
            v.pending.popleft()
            v.reads += 1
            self._signal(op, ready)

    @staticmethod
    def _signal(op, ready):
        op.wait -= 1
        if op.wait == 0:
            ready.append(op)

    # ---- running ----
    def _work(self):
        while True:
            op = self._ready.get()
            self._execute(op)

    def _execute(self, op):
        failure = None if op.always else next((v.failure for v in op.reads if v.failure is not None), None)
        if failure is None:
            try:
                op.fn()
            except BaseException as err:  # noqa: BLE001 - surfaced at the next wait
                log.debug("operation %s failed: %s", op.name, err)
                failure = _Failure(err)
        ready = []
        with self._lock:
            if failure is not None and failure not in self._failures:
                self._failures.append(failure)
            if not op.always:
                for v in op.writes:
                    v.failure = failure
            if not self.naive:
                for v in op.reads:
                    v.reads -= 1
                    self._grant(v, ready)
                for v in op.writes:
                    v.writing = False
                    self._grant(v, ready)
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()
        for r in ready:
            self._ready.put(r)
        if self.naive and failure is not None:
            self._raise(failure)

    # ---- waiting ----
    def wait(self, reads=(), writes=()):
        """Block until every operation pushed before on these Vars has finished (writes:
        readers too), then raise a stored failure of a read Var."""
        reads = list(reads)
        writes = list(writes)
        if not all(v.idle() for v in reads + writes):
            done = threading.Event()
            self.push(done.set, reads, writes, name="wait", always=True)
            self._wait_event(done)
        for v in reads + writes:
            if v.failure is not None:
                failure, v.failure = v.failure, None
                if not failure.reported:
                    self._raise(failure)

    def _wait_event(self, event):
        if threading.current_thread() in self._workers:
            raise RuntimeError("kiln engine: an operation waited on the engine from a worker thread")
        event.wait()

    def waitall(self):
        with self._idle:
            while self._in_flight:
                self._idle.wait()
            failures, self._failures = self._failures, []
        pending = [f for f in failures if not f.reported]
        if pending:
            self._raise(pending[0])

    def _raise(self, failure):
        failure.reported = True
        with self._lock:
            if failure in self._failures:
                self._failures.remove(failure)
        raise failure.error


def _unique(vars_):
    out = []
    for v in vars_:
        if all(v is not u for u in out):
            out.append(v)
    return out


def _from_env():
    kind = os.environ.get("KILN_ENGINE_TYPE") or os.environ.get("MXNET_ENGINE_TYPE") or "ThreadedEngine"
    workers = int(os.environ.get("KILN_CPU_WORKER_NTHREADS") or os.environ.get("MXNET_CPU_WORKER_NTHREADS") or 1)
    inline = int(os.environ.get("KILN_ENGINE_INLINE", 1 << 16))
    return Engine(num_workers=workers, naive=(kind == "NaiveEngine"), inline_elements=inline)


_engine = _from_env()


def get():
    return _engine


def _drain_at_exit():
    try:
        _engine.waitall()
    except Exception as err:  # noqa: BLE001 - the interpreter is exiting; report, do not raise
        log.warning("an asynchronous operation failed before exit: %s", err)


atexit.register(_drain_at_exit)
