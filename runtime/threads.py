"""Worker threads for kernels, inside native code: libgomp's ``GOMP_parallel``.

Generated code splits a kernel's outermost loop by calling
``GOMP_parallel(fn, data, nthreads, 0)``, so a program runs on every core
with no Python between kernels. libgomp is loaded into the process once so
that the JIT resolves those symbols; when it cannot be loaded, codegen emits
serial code instead.

libgomp's idle threads spin by default. kiln calls kernels from several
Python threads (the caller, engine workers), each with its own libgomp team,
and shares machines with data loaders: spinning teams then starve each other
and a 20 us parallel loop can take milliseconds. Unless the user set
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, idle threads sleep (passive).
"""
from __future__ import annotations

import ctypes.util
import logging
import os
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_loaded = []  # [bool] once libgomp was looked for


def num_threads():
    """Threads requested: ``KILN_NUM_THREADS``, else every CPU of the machine."""
    value = os.environ.get("KILN_NUM_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            log.warning("KILN_NUM_THREADS=%r is not an integer; using %d threads", value, os.cpu_count() or 1)
    return max(1, os.cpu_count() or 1)


def load_runtime():
    """Load libgomp into the process (once); False when it is not available."""
    with _lock:
        if not _loaded:
            _loaded.append(_load())
        return _loaded[0]


def _load():
    import llvmlite.binding as llvm
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "passive"  # read by libgomp when it loads
    path = ctypes.util.find_library("gomp")
    if path is None:
        log.debug("libgomp not found: kernels run serially")
        return False
    try:
        llvm.load_library_permanently(path)
    except RuntimeError as exc:
        log.debug("libgomp (%s) could not be loaded, kernels run serially: %s", path, exc)
        return False
    return True


def parallel_threads():
    """Threads generated code may use: 1 (serial code) unless more are requested and libgomp loads."""
    n = num_threads()
    return n if n > 1 and load_runtime() else 1
