"""A CUDA device emulated on the CPU, for testing the CUDA C that ``compiler/codegen/cuda*.py``
renders on machines without a GPU.

``EmulatedDevice`` has the interface of kiln's GPU device objects (``alloc``/``free``,
``copy_in``/``copy_out``/``memset``, ``module(source, name).function(fname)``, ``launch``,
``synchronize``). Modules are compiled by the host C++ compiler together with
``kiln_emu.h`` (CUDA keywords, built-ins, intrinsics) and ``kiln_emu_runtime.h`` (fibers,
scheduler), once per source hash, into a shared library cached on disk. Device memory is
host memory between guard pages, filled with 0xff bytes (NaN / -1) when allocated, so reads
of uninitialised memory show and out-of-bounds accesses become ``EmulatorError``s.
"""
from __future__ import annotations

import bisect
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
HEADERS = ("kiln_emu.h", "kiln_emu_runtime.h")
BLOCKING = re.compile(r"\b(__syncthreads|__syncwarp|__shfl\w*|__ballot_sync|__any_sync|__all_sync)\b")
GLOBAL_FN = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(")
# the renderer's PRELUDE converts float16 with inline PTX; the host gets the emulator's versions
ASM_H2F = re.compile(r'asm\s*\(\s*"cvt\.f32\.f16 %0, %1;"\s*:\s*"=f"\s*\((\w+)\)\s*:\s*"h"\s*\((\w+)\)\s*\)\s*;')
ASM_F2H = re.compile(r'asm\s*\(\s*"cvt\.rn\.f16\.f32 %0, %1;"\s*:\s*"=h"\s*\((\w+)\)\s*:\s*"f"\s*\((\w+)\)\s*\)\s*;')
EXTERN_SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([\w\s]+?)\s*(\w+)\s*\[\s*\]\s*;")
ORDERS = {"forward": 0, "reverse": 1}


class EmulatorError(RuntimeError):
    """A launch went wrong on the emulated device (deadlock, divergent barrier, fault, ...)."""


def compiler():
    """The host C++ compiler (``$CXX``, else ``c++``/``g++``), or None."""
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx) or (cxx if os.path.exists(cxx) else None)
    return shutil.which("c++") or shutil.which("g++")


def available():
    return compiler() is not None


def patch_source(source):
    """The rendered CUDA C with inline PTX float16 conversions and dynamic shared arrays
    replaced by host equivalents; any other inline assembly is refused."""
    src = ASM_H2F.sub(r"\1 = kiln_emu_h2f(\2);", source)
    src = ASM_F2H.sub(r"\1 = kiln_emu_f2h(\2);", src)
    src = EXTERN_SHARED.sub(r"\1 *\2 = (\1 *)kiln_emu::dynamic_shared();", src)
    if re.search(r"\basm\b", src):
        line = next(ln for ln in src.splitlines() if re.search(r"\basm\b", ln))
        raise EmulatorError("inline assembly the emulator cannot run: %s" % line.strip())
    return src


def _strip(source):
    """Source without comments and preprocessor lines (for finding function bodies)."""
    s = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    s = re.sub(r"//[^\n]*", " ", s)
    return re.sub(r"^[ \t]*#(?:[^\n]*\\\n)*[^\n]*", " ", s, flags=re.M)


def _bodies(source):
    """{function name: body text} for the top-level functions of ``source``."""
    s = _strip(source)
    out, depth, start, head_from = {}, 0, 0, 0
    for i, ch in enumerate(s):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                head = s[head_from:start]
                names = re.findall(r"(\w+)\s*\(", head)
                if names and "(" in head:
                    name = names[-1] if not names[-1].startswith("__launch_bounds__") else names[-2]
                    out[name] = s[start:i + 1]
                head_from = i + 1
        elif ch == ";" and depth == 0:
            head_from = i + 1
    return out


def direct_functions(source):
    """Kernels that use no barrier or warp intrinsic (also through device functions): their
    threads can run one after another as plain calls, which is what cooperative fibers that
    never yield would do, only faster. The runtime fails loudly if this guess is wrong."""
    bodies = _bodies(source)
    blocking = {n for n, b in bodies.items() if BLOCKING.search(b)}
    grew = True
    while grew:
        grew = False
        for n, b in bodies.items():
            if n not in blocking and any(re.search(r"\b%s\s*\(" % re.escape(m), b) for m in blocking):
                blocking.add(n)
                grew = True
    return {n for n in GLOBAL_FN.findall(source) if n not in blocking}


def translation_unit(source, name):
    """The C++ text compiled for one module: shim, the source, trampolines, runtime."""
    fns = GLOBAL_FN.findall(source)
    if not fns:
        raise EmulatorError("module %s: no __global__ function" % name)
    lines = ['#include "kiln_emu.h"', '#line 1 "%s.cu"' % re.sub(r"[^\w.-]", "_", name), patch_source(source),
             '#line 1 "kiln_emu_trampolines"']
    for fn in fns:
        lines.append('extern "C" __attribute__((visibility("default"))) void kiln_emu_%s(void **a) '
                     '{ kiln_emu::call(&%s, a); }' % (fn, fn))
        lines.append('extern "C" __attribute__((visibility("default"))) const int kiln_emu_nargs_%s = '
                     'kiln_emu::nargs(&%s);' % (fn, fn))
    lines.append('#include "kiln_emu_runtime.h"')
    return "\n".join(lines) + "\n", fns


def _flags(debug):
    flags = ["-std=c++17", "-O1", "-fPIC", "-shared", "-w", "-fno-strict-aliasing", "-U_FORTIFY_SOURCE",
             "-I", HERE]
    if debug:  # undefined behaviour (signed overflow, shifts, static-array bounds) traps -> SIGILL
        flags += ["-fsanitize=undefined", "-fsanitize-undefined-trap-on-error", "-fno-sanitize=vptr"]
    return flags


_version = {}
_loaded = {}  # cache path -> ctypes library (a library is loaded once per process)
_lock = threading.Lock()


def _compiler_version(cxx):
    if cxx not in _version:
        _version[cxx] = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    return _version[cxx]


def cache_dir():
    d = os.environ.get("KILN_EMU_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "kiln-cuda-emu-%d" % os.getuid())
    os.makedirs(d, exist_ok=True)
    return d


class PendingModule:
    """A module being compiled in a background compiler process: ``result()`` waits."""

    def __init__(self, name, unit, fns, direct, path, proc, src_path):
        self.name, self.unit, self.fns, self.direct = name, unit, fns, direct
        self.path, self.proc, self.src_path = path, proc, src_path
        self._module = None

    def result(self):
        if self._module is None:
            if self.proc is not None:
                out, _ = self.proc.communicate()
                if self.proc.returncode != 0:
                    numbered = "\n".join("%5d  %s" % (i + 1, ln) for i, ln in enumerate(self.unit.splitlines()))
                    raise EmulatorError("module %s does not compile for the emulator:\n%s\n%s"
                                        % (self.name, out.decode(errors="replace")[-6000:], numbered[-20000:]))
                os.replace(self.path + ".tmp%d" % os.getpid(), self.path)
                os.unlink(self.src_path)
                self.proc = None
            with _lock:
                lib = _loaded.get(self.path)
                if lib is None:
                    lib = _loaded[self.path] = ctypes.CDLL(self.path)
                    f = lib.kiln_emu_launch
                    f.restype = ctypes.c_int
                    f.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                                  ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_ulonglong, ctypes.c_int,
                                  ctypes.c_double, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p),
                                  ctypes.c_void_p, ctypes.c_ulonglong]
            self._module = EmuModule(self.name, lib, self.fns, self.direct)
        return self._module


def compile_module(source, name, debug=False):
    """Start compiling ``source`` (or find it in the cache): a ``PendingModule``."""
    cxx = compiler()
    if cxx is None:
        raise EmulatorError("no C++ compiler ($CXX, c++ or g++) for the CUDA emulator")
    unit, fns = translation_unit(source, name)
    flags = _flags(debug)
    h = hashlib.sha256()
    for part in [unit, " ".join(flags), cxx, _compiler_version(cxx)] + [
            open(os.path.join(HERE, f)).read() for f in HEADERS]:
        h.update(part.encode())
        h.update(b"\0")
    key = h.hexdigest()[:32]
    path = os.path.join(cache_dir(), key + ".so")
    direct = direct_functions(source)
    if os.path.exists(path):
        return PendingModule(name, unit, fns, direct, path, None, None)
    src_path = os.path.join(cache_dir(), "%s.%d.cpp" % (key, os.getpid()))
    with open(src_path, "w") as f:
        f.write(unit)
    proc = subprocess.Popen([cxx] + flags + ["-o", path + ".tmp%d" % os.getpid(), src_path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return PendingModule(name, unit, fns, direct, path, proc, src_path)


class EmuFunction:
    """A kernel handle: the trampoline's address, its parameter count, how threads run."""

    def __init__(self, module, name, address, nargs, direct):
        self.module, self.name, self.address, self.nargs, self.direct = module, name, address, nargs, direct

    def __repr__(self):
        return "<emulated kernel %s (%d params%s)>" % (self.name, self.nargs, ", direct" if self.direct else "")


class EmuModule:
    def __init__(self, name, lib, fns, direct):
        self.name, self.lib, self.functions, self.direct = name, lib, list(fns), set(direct)
        self._handles = {}

    def function(self, fname):
        h = self._handles.get(fname)
        if h is None:
            if fname not in self.functions:
                raise EmulatorError("module %s has no __global__ function %r (has %s)"
                                    % (self.name, fname, ", ".join(self.functions[:20])))
            addr = ctypes.cast(self.lib["kiln_emu_" + fname], ctypes.c_void_p).value
            nargs = ctypes.c_int.in_dll(self.lib, "kiln_emu_nargs_" + fname).value
            h = self._handles[fname] = EmuFunction(self, fname, addr, nargs, fname in self.direct)
        return h


def _dim3(v):
    if isinstance(v, (int, np.integer)):
        return (int(v), 1, 1)
    v = tuple(int(x) for x in v)
    return v + (1,) * (3 - len(v))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
PAGE = os.sysconf("SC_PAGE_SIZE")
PROT_NONE, PROT_RW, MAP_PRIVATE_ANON, MAP_NORESERVE = 0, 3, 0x02 | 0x20, 0x4000
POISON = 0xFF
MAX_THREADS = 1024
STACK_STRIDE = (256 << 10) + PAGE  # a guard page, then 256 KiB of fiber stack
_stacks = []
_launch_lock = threading.Lock()  # one launch at a time: the stacks and each library's state are shared


def _stack_area():
    """The fiber stacks every launch uses (mapped once per process, committed lazily)."""
    if not _stacks:
        total = STACK_STRIDE * MAX_THREADS
        base = _libc.mmap(None, total, PROT_RW, MAP_PRIVATE_ANON | MAP_NORESERVE, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise MemoryError("emulated device: cannot map the fiber stacks")
        for i in range(MAX_THREADS):
            _libc.mprotect(base + i * STACK_STRIDE, PAGE, PROT_NONE)
        _stacks.append(base)
    return _stacks[0]


class EmulatedDevice:
    """A CUDA device on the CPU (see the module docstring). ``order``: 'forward' runs a
    block's ready threads in index order each round, 'reverse' backwards (running a suite in
    both orders exposes missing barriers that one order hides). ``debug``: compile with
    undefined-behaviour traps (default ``$KILN_EMU_DEBUG``). ``timeout``: seconds per launch."""

    def __init__(self, order="forward", debug=None, timeout=120.0):
        self.order = ORDERS[order]
        self.debug = bool(int(os.environ.get("KILN_EMU_DEBUG", "0"))) if debug is None else bool(debug)
        self.timeout = float(timeout)
        self._allocs = {}  # user pointer -> (map base, map bytes, nbytes, serial)
        self._starts = []  # sorted user pointers
        self._serial = 0
        self._err = ctypes.create_string_buffer(4096)
        self._lock = threading.Lock()  # allocations are freed by the garbage collector on any thread
        self.launches = 0

    def __repr__(self):
        return "EmulatedDevice(order=%r)" % ("reverse" if self.order else "forward")

    # ---- memory ----
    def alloc(self, nbytes):
        """A 256-byte aligned device pointer to ``nbytes`` (filled with 0xff bytes), followed by a
        guard page after the 256-byte rounded size and preceded by one."""
        nbytes = int(nbytes)
        rounded = max(256, -(-nbytes // 256) * 256)
        data = -(-rounded // PAGE) * PAGE
        total = data + 2 * PAGE
        base = _libc.mmap(None, total, PROT_RW, MAP_PRIVATE_ANON, -1, 0)
        if base in (None, ctypes.c_void_p(-1).value):
            raise MemoryError("emulated device: cannot map %d bytes" % total)
        _libc.mprotect(base, PAGE, PROT_NONE)
        _libc.mprotect(base + PAGE + data, PAGE, PROT_NONE)
        ptr = base + PAGE + data - rounded
        ctypes.memset(ptr, POISON, rounded)
        with self._lock:
            self._serial += 1
            self._allocs[ptr] = (base, total, nbytes, self._serial)
            bisect.insort(self._starts, ptr)
        return ptr

    def free(self, ptr):
        with self._lock:
            rec = self._allocs.pop(ptr, None)
            if rec is None:
                raise EmulatorError("free of %#x, which is no live allocation" % ptr)
            self._starts.remove(ptr)
        _libc.munmap(rec[0], rec[1])

    def _owner(self, ptr, nbytes=0):
        """(start, record) of the allocation holding [ptr, ptr + nbytes), else None."""
        with self._lock:
            k = bisect.bisect_right(self._starts, ptr) - 1
            if k < 0:
                return None
            start = self._starts[k]
            rec = self._allocs[start]
        return (start, rec) if ptr + nbytes <= start + rec[2] else None

    def _check_range(self, ptr, nbytes, what):
        if self._owner(ptr, nbytes) is None:
            raise EmulatorError("%s: [%#x, +%d) is not inside one device allocation" % (what, ptr, nbytes))

    def copy_in(self, ptr, array):
        a = np.ascontiguousarray(array)
        self._check_range(ptr, a.nbytes, "copy_in")
        ctypes.memmove(ptr, a.ctypes.data, a.nbytes)

    def copy_out(self, array, ptr):
        if not (array.flags.c_contiguous and array.flags.writeable):
            raise EmulatorError("copy_out needs a writeable C-contiguous array")
        self._check_range(ptr, array.nbytes, "copy_out")
        ctypes.memmove(array.ctypes.data, ptr, array.nbytes)

    def copy(self, dst, src, nbytes):
        self._check_range(dst, nbytes, "copy (destination)")
        self._check_range(src, nbytes, "copy (source)")
        ctypes.memmove(int(dst), int(src), int(nbytes))

    def memset(self, ptr, byte, nbytes):
        self._check_range(ptr, nbytes, "memset")
        ctypes.memset(ptr, int(byte), int(nbytes))

    # ---- code ----
    def module(self, source, name):
        return compile_module(source, name, self.debug).result()

    def module_async(self, source, name):
        """Start compiling (a background compiler process); ``.result()`` is the module."""
        return compile_module(source, name, self.debug)

    def launch(self, handle, grid, block, shared_bytes, pointers):
        grid, block = _dim3(grid), _dim3(block)
        pointers = [int(p) for p in pointers]
        if len(pointers) != handle.nargs:
            raise EmulatorError("%s takes %d pointers, got %d" % (handle.name, handle.nargs, len(pointers)))
        for i, p in enumerate(pointers):
            if self._owner(p) is None:
                raise EmulatorError("%s: pointer %d (%#x) is not a device allocation" % (handle.name, i, p))
        args = (ctypes.c_void_p * max(len(pointers), 1))(*pointers)
        addr = ctypes.c_void_p()
        with _launch_lock:
            rc = handle.module.lib.kiln_emu_launch(
                handle.address, (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), args, int(handle.direct),
                int(shared_bytes), self.order, self.timeout, self._err, len(self._err), ctypes.byref(addr),
                _stack_area(), STACK_STRIDE)
        self.launches += 1
        if rc:
            msg = self._err.value.decode(errors="replace")
            if addr.value and ("SIGSEGV" in msg or "SIGBUS" in msg):
                msg += " (%s)" % self.describe(addr.value)
            raise EmulatorError("%s<<<%s, %s>>>: %s" % (handle.name, grid, block, msg))

    def overrun(self, ptr):
        """Whether anything wrote into the padding between an allocation's size and the next 256
        bytes (still 0xff unless written: writes past the end that no guard page catches)."""
        base, total, nbytes, _ = self._allocs[ptr]
        pad = max(256, -(-nbytes // 256) * 256) - nbytes
        if pad == 0:
            return False
        tail = (ctypes.c_ubyte * pad).from_address(ptr + nbytes)
        return any(b != POISON for b in bytes(tail))

    def describe(self, addr):
        """Which allocation an address is near (for out-of-bounds reports)."""
        for start, (base, total, nbytes, serial) in self._allocs.items():
            if base <= addr < base + total:
                if addr >= start:
                    return "%d bytes past the end of allocation #%d of %d bytes" % (addr - start - nbytes, serial, nbytes)
                return "%d bytes before allocation #%d of %d bytes" % (start - addr, serial, nbytes)
        return "outside every device allocation: a wild pointer or a fiber stack overflow"

    def synchronize(self):
        """Launches run to completion when called: nothing is pending."""

    def close(self):
        for p in list(self._allocs):
            self.free(p)
