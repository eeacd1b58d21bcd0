"""LLVM JIT for the CPU: LLVM IR text -> optimised native code in this process.

Compiled modules are cached in memory by a hash of the IR text and the
optimisation settings, so re-binding the same graph does not recompile.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_state = {}
_cache = {}

ENTRY_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def _llvm():
    import llvmlite.binding as llvm
    if "tm" not in _state:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_default_triple()
        _state["tm"] = target.create_target_machine(
            cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=3)
    return llvm, _state["tm"]


class JitModule:
    """A finalised native module; keeps its engine alive while entry points are used."""

    def __init__(self, ir_text, opt_level=3):
        llvm, tm = _llvm()
        mod = llvm.parse_assembly(ir_text)
        mod.triple = tm.triple
        mod.data_layout = str(tm.target_data)
        mod.verify()
        if opt_level > 0:
            pto = llvm.create_pipeline_tuning_options(speed_level=opt_level)
            pto.loop_vectorization = True
            pto.slp_vectorization = True
            pb = llvm.create_pass_builder(tm, pto)
            pb.getModulePassManager().run(mod, pb)
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
        self.engine.add_module(mod)
        self.engine.finalize_object()
        self.engine.run_static_constructors()
        self.optimized_ir = str(mod)

    def entry(self, name):
        addr = self.engine.get_function_address(name)
        if not addr:
            raise KeyError("compiled module has no function %r" % name)
        return ENTRY_TYPE(addr)


def compile_ir(ir_text, opt_level=3):
    key = hashlib.sha256(("%d\n" % opt_level + ir_text).encode()).hexdigest()
    with _lock:
        mod = _cache.get(key)
        if mod is None:
            log.debug("JIT compiling module %s (%d bytes of IR)", key[:12], len(ir_text))
            mod = JitModule(ir_text, opt_level)
            _cache[key] = mod
    return mod


def cache_size():
    return len(_cache)
