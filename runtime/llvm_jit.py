"""LLVM JIT for the CPU: LLVM IR text -> optimised native code in this process.

Compiled modules are cached in memory, and their object code on disk
(``$KILN_CACHE_DIR``, default ``~/.cache/kiln``), so a new process binding
the same graph loads native code instead of running LLVM's optimiser again.
The key covers everything that changes the code: IR text, optimisation level,
target triple, host CPU name and features, llvmlite and LLVM versions, and
``CACHE_FORMAT``. A cache file is the object emitted by the target machine
behind a header (magic, format, key, length, sha256 of the object); a file
that does not match is logged, ignored and rewritten, never executed.
``KILN_CACHE_DIR=""`` or ``KILN_DISABLE_DISK_CACHE=1`` turns the disk cache off.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import struct
import tempfile
import threading
import time

from .threads import load_runtime

log = logging.getLogger(__name__)

CACHE_FORMAT = 2
_MAGIC = b"KILNOBJ\n"
_HEADER = struct.Struct("<8sI32sQ32s")  # magic, format, key, object length, object sha256

_lock = threading.Lock()
_state = {}
_cache = {}
_stats = {"memory_hits": 0, "disk_hits": 0, "misses": 0, "disk_errors": 0,
          "compile_seconds": 0.0, "load_seconds": 0.0}

ENTRY_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _llvm():
    import llvmlite
    import llvmlite.binding as llvm
    if "tm" not in _state:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        load_runtime()  # generated code may call libgomp; MCJIT resolves symbols in the process
        target = llvm.Target.from_default_triple()
        cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
        _state["new_tm"] = lambda: target.create_target_machine(cpu=cpu, features=features, opt=3)
        _state["tm"] = _state["new_tm"]()
        _state["target_id"] = [str(CACHE_FORMAT), llvmlite.__version__, "%d.%d.%d" % llvm.llvm_version_info,
                               _state["tm"].triple, cpu, features]
    return llvm, _state["tm"]


def target_id():
    """Strings naming this machine's target and toolchain (code specialised to them must not move)."""
    _llvm()
    return list(_state["target_id"])


def cache_key(ir_text, opt_level):
    """sha256 over the IR and everything about this machine and toolchain that changes the code."""
    _llvm()
    h = hashlib.sha256()
    for part in _state["target_id"] + [str(opt_level), ir_text]:
        data = part.encode()
        h.update(b"%d:" % len(data))
        h.update(data)
    return h.digest()


def cache_dir():
    """The disk cache directory, or None when the disk cache is disabled."""
    if os.environ.get("KILN_DISABLE_DISK_CACHE", "").strip() not in ("", "0"):
        return None
    value = os.environ.get("KILN_CACHE_DIR")
    if value is None:
        return os.path.join(os.path.expanduser("~"), ".cache", "kiln")
    return value or None


def target_machine(cpu=None, features=None, opt_level=3, reloc="default"):
    """A target machine for this host's triple; ``cpu``/``features`` default to the host's
    (ahead-of-time builds pass ``reloc="pic"`` and may name a portable CPU such as x86-64)."""
    llvm, _ = _llvm()
    target = llvm.Target.from_default_triple()
    cpu = llvm.get_host_cpu_name() if cpu is None else cpu
    features = llvm.get_host_cpu_features().flatten() if features is None else features
    return target.create_target_machine(cpu=cpu, features=features, opt=opt_level, reloc=reloc)


def optimize(ir_text, opt_level, tm=None):
    """Parse, verify and run the JIT's optimisation pipeline (for ``tm``, default the JIT's
    host machine); returns the module and machine."""
    llvm, host_tm = _llvm()
    tm = host_tm if tm is None else tm
    mod = llvm.parse_assembly(ir_text)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    if opt_level > 0:
        pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        # kiln's kernels unroll where it pays (the GEMM register tile); LLVM's own unrolling
        # of them multiplied compile time by ~9 for ~5% of run time
        pto.loop_unrolling = False
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
    return mod, tm


def optimized_ir(ir_text, opt_level=3):
    """The optimised module as text, for inspecting what LLVM made of generated code."""
    return str(optimize(ir_text, opt_level)[0])


def _compile_object(ir_text, opt_level):
    mod, tm = optimize(ir_text, opt_level)
    return tm.emit_object(mod)


def read_cache_file(path, key, magic=_MAGIC, fmt=CACHE_FORMAT):
    """The payload stored for ``key``, or None (missing or invalid files are never loaded)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("kiln cache: cannot read %s (%s); recompiling", path, exc)
        _stats["disk_errors"] += 1
        return None
    if len(data) >= _HEADER.size:
        stored_magic, stored_fmt, stored_key, length, digest = _HEADER.unpack_from(data)
        obj = data[_HEADER.size:]
        if (stored_magic, stored_fmt, stored_key, length) == (magic, fmt, key, len(obj)) \
                and hashlib.sha256(obj).digest() == digest:
            return obj
    log.warning("kiln cache: %s is corrupt or truncated; recompiling", path)
    _stats["disk_errors"] += 1
    return None


def write_cache_file(path, key, obj, magic=_MAGIC, fmt=CACHE_FORMAT):
    """Write atomically (temp file + rename) so readers never see a partial file."""
    directory = os.path.dirname(path)
    header = _HEADER.pack(magic, fmt, key, len(obj), hashlib.sha256(obj).digest())
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(obj)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        log.warning("kiln cache: cannot write %s (%s)", path, exc)


class JitModule:
    """A finalised native module; keeps its engine alive while entry points are used.

    ``from_cache`` tells whether the object code came from the disk cache,
    ``compile_seconds`` how long producing it took (compiling or loading).
    """

    def __init__(self, ir_text, opt_level=3, key=None):
        llvm, _ = _llvm()
        t0 = time.perf_counter()
        key = key or cache_key(ir_text, opt_level)
        directory = cache_dir()
        path = os.path.join(directory, key.hex() + ".kobj") if directory else None
        obj = read_cache_file(path, key) if path else None
        self.from_cache = obj is not None
        if obj is None:
            obj = _compile_object(ir_text, opt_level)
            if path:
                write_cache_file(path, key, obj)
        # the engine owns (and frees) its target machine, so it gets its own
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _state["new_tm"]())
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()
        self.key = key.hex()
        self.compile_seconds = time.perf_counter() - t0

    def entry(self, name):
        addr = self.engine.get_function_address(name)
        if not addr:
            raise KeyError("compiled module has no function %r" % name)
        return ENTRY_TYPE(addr)


def compile_ir(ir_text, opt_level=3):
    key = cache_key(ir_text, opt_level)
    with _lock:
        mod = _cache.get(key)
        if mod is not None:
            _stats["memory_hits"] += 1
            return mod
        log.debug("JIT compiling module %s (%d bytes of IR)", key.hex()[:12], len(ir_text))
        mod = JitModule(ir_text, opt_level, key)
        _cache[key] = mod
        if mod.from_cache:
            _stats["disk_hits"] += 1
            _stats["load_seconds"] += mod.compile_seconds
        else:
            _stats["misses"] += 1
            _stats["compile_seconds"] += mod.compile_seconds
    return mod


def cache_size():
    return len(_cache)


def cache_stats():
    """Counts of memory hits, disk hits, misses and invalid cache files; seconds compiling and loading."""
    with _lock:
        return dict(_stats)
