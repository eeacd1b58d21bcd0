"""Compiled programs cached by graph, so binding a graph seen before skips every pass.

The runtime's object cache is keyed by LLVM IR, which only exists after
inference, gradients, simplification, fusion, lowering, memory planning and
IR emission have run. This cache sits one level up: its key is a sha256 over
everything those steps read (the canonical symbol JSON of the heads, node
names included; variable shapes and dtypes; grad_req per variable; the
program name, disabled passes and compile options such as the fast-math
flags and the thread count codegen bakes in; the target the IR is
specialised for; kiln's version, a digest of the compiler's and runtime's
sources, so that an edited compiler never reuses stale programs, and
``FORMAT``). The value is the ``ProgramSpec`` and the ``info`` dict as JSON,
plain data that cannot run code, kept in memory and in
``$KILN_CACHE_DIR/<key>.kprog`` with the object cache's header, atomic
writes and validation: a bad file is logged, ignored and rewritten. The
runtime then finds the object code in its own cache by IR hash.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import os
import threading
import time

from ..runtime import llvm_jit
from ..runtime.program import ProgramSpec, SlotSpec
from .serialization import to_json

log = logging.getLogger(__name__)

FORMAT = 1
MAGIC = b"KILNPRG\n"
MEMORY_ENTRIES = 64

_lock = threading.Lock()
_memory = collections.OrderedDict()  # key -> payload dict, least recently used first
_stats = {"memory_hits": 0, "disk_hits": 0, "misses": 0, "disk_errors": 0}


@functools.lru_cache(maxsize=None)
def _build_id():
    """kiln's version and a digest of the compiler's and runtime's Python sources."""
    from importlib import metadata
    try:
        version = metadata.version("kiln")
    except metadata.PackageNotFoundError:
        version = "unknown"
    h = hashlib.sha256()
    roots = [os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(llvm_jit.__file__))]
    for root in roots:
        for directory, subdirs, files in sorted(os.walk(root)):
            subdirs.sort()
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(directory, f)
                    with open(path, "rb") as fh:
                        h.update(os.path.relpath(path, root).encode() + b"\0" + fh.read() + b"\0")
    return [version, h.hexdigest()]


def program_key(heads, var_shapes, var_types, grad_req, options):
    """sha256 of everything that decides the compiled program; None (compile, do not cache) when
    the graph cannot be written or ``KILN_DISABLE_PROGRAM_CACHE`` is set (tests that spy on passes)."""
    if os.environ.get("KILN_DISABLE_PROGRAM_CACHE", "").strip() not in ("", "0"):
        return None
    try:
        graph = to_json(heads)
    except Exception as exc:  # noqa: BLE001 - an unwritable graph is compiled, just not cached
        log.debug("program cache: graph not serialisable (%s); not cached", exc)
        return None
    parts = {
        "format": FORMAT,
        "build": _build_id(),
        "target": llvm_jit.target_id(),
        "graph": graph,
        "shapes": sorted((k, [int(d) for d in v]) for k, v in var_shapes.items() if v is not None),
        "dtypes": sorted((k, _dtype_name(v)) for k, v in var_types.items() if v is not None),
        "grad_req": sorted((grad_req or {}).items()),
        "options": options,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=list).encode()).digest()


def _dtype_name(t):
    import numpy as np
    return np.dtype(t).name


def _path(key):
    directory = llvm_jit.cache_dir()
    return os.path.join(directory, key.hex() + ".kprog") if directory else None


def _payload(spec, info):
    return {"spec": {"name": spec.name, "llvm_ir": spec.llvm_ir, "entries": list(spec.entries),
                     "slots": [[s.name, list(s.shape), s.dtype, s.external, s.offset, s.alias_of]
                               for s in spec.slots],
                     "arena_bytes": spec.arena_bytes, "report": spec.report},
            "info": info}


def _rebuild(payload, hit, seconds):
    """Fresh ProgramSpec and info from a payload (raises on any malformed field)."""
    d = payload["spec"]
    slots = []
    for name, shape, dtype, external, offset, alias_of in d["slots"]:
        if not (isinstance(name, str) and isinstance(dtype, str) and isinstance(external, bool)
                and isinstance(offset, int) and (alias_of is None or isinstance(alias_of, int))
                and all(isinstance(x, int) and x >= 0 for x in shape)):
            raise ValueError("bad slot %r" % name)
        slots.append(SlotSpec(name, tuple(shape), dtype, external, offset, alias_of))
    if not (isinstance(d["name"], str) and isinstance(d["llvm_ir"], str) and isinstance(d["arena_bytes"], int)
            and all(isinstance(e, str) for e in d["entries"]) and isinstance(d["report"], dict)):
        raise ValueError("bad program fields")
    report = json.loads(json.dumps(d["report"]))  # a copy: callers may annotate it
    report["passes"] = [{"name": "program_cache", "nodes_before": 0, "nodes_after": 0, "seconds": seconds}]
    report["program_cache"] = {"hit": hit, "compile_passes": d["report"].get("passes", [])}
    info = json.loads(json.dumps(payload["info"]))
    info["out_shapes"] = [tuple(s) for s in info["out_shapes"]]
    return ProgramSpec(d["name"], d["llvm_ir"], list(d["entries"]), slots, d["arena_bytes"], report), info


def load(key):
    """(ProgramSpec, info) compiled before for ``key``, from memory or disk, or None."""
    if key is None:
        return None
    t0 = time.perf_counter()
    with _lock:
        payload = _memory.get(key)
        if payload is not None:
            _memory.move_to_end(key)
            _stats["memory_hits"] += 1
            return _rebuild(payload, "memory", time.perf_counter() - t0)
    path = _path(key)
    data = llvm_jit.read_cache_file(path, key, MAGIC, FORMAT) if path else None
    if data is not None:
        try:
            payload = json.loads(data.decode("utf-8"))
            result = _rebuild(payload, "disk", 0.0)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("kiln program cache: %s does not hold a valid program (%s); recompiling", path, exc)
            with _lock:
                _stats["disk_errors"] += 1
            return None
        result[0].report["passes"][0]["seconds"] = time.perf_counter() - t0
        with _lock:
            _remember(key, payload)
            _stats["disk_hits"] += 1
        return result
    with _lock:
        _stats["misses"] += 1
    return None


def store(key, spec, info):
    """Remember a freshly compiled program in memory and on disk."""
    if key is None:
        return
    payload = _payload(spec, info)
    with _lock:
        _remember(key, payload)
    path = _path(key)
    if path:
        llvm_jit.write_cache_file(path, key, json.dumps(payload).encode("utf-8"), MAGIC, FORMAT)


def _remember(key, payload):
    _memory[key] = payload
    _memory.move_to_end(key)
    while len(_memory) > MEMORY_ENTRIES:
        _memory.popitem(last=False)


def clear_memory():
    """Forget the in-process entries (the disk cache stays)."""
    with _lock:
        _memory.clear()


def cache_stats():
    with _lock:
        return dict(_stats)
