"""CUDA C -> PTX (and cubin) through NVRTC, with no GPU needed.

NVRTC comes from the ``cuda-bindings`` package (``cuda.bindings.nvrtc``) and
the ``nvidia-cuda-nvrtc`` wheel (the library itself); both are imported on
first use only, so kiln imports and runs on the CPU without them.

The architecture asked for is clamped to what this NVRTC supports
(``nvrtcGetSupportedArchs``): a supported ``sm_XX`` compiles for it (PTX and,
when asked, cubin); a newer one than NVRTC knows compiles PTX for the newest
supported architecture below it (the driver JIT-compiles PTX for newer GPUs,
a cubin would not load there), and one older than every supported
architecture is an error. Results are cached in memory and on disk like the
LLVM JIT's objects (``runtime/llvm_jit.py``: ``$KILN_CACHE_DIR``, default
``~/.cache/kiln``; ``KILN_CACHE_DIR=""`` or ``KILN_DISABLE_DISK_CACHE=1``
turn the disk cache off), keyed by a hash of the source, options, target and
NVRTC version.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import struct
import threading
import time
from dataclasses import dataclass

from .errors import MXNetError
from .llvm_jit import cache_dir, read_cache_file, write_cache_file

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_MAGIC = b"KILNPTX\n"
_PAYLOAD = struct.Struct("<QQQ")  # arch, PTX length, cubin length (0: none)
DEFAULT_ARCH = 80

_lock = threading.Lock()
_cache = {}
_state = {}
_stats = {"memory_hits": 0, "disk_hits": 0, "misses": 0, "compile_seconds": 0.0}


class NVRTCCompileError(MXNetError):
    """NVRTC rejected generated CUDA C (callers may retry with simpler, unfused kernels)."""


@dataclass(frozen=True)
class CudaModule:
    """Compiled code of one CUDA source: ``ptx`` (text), ``cubin`` (bytes, when asked and
    possible for ``arch``), ``arch`` (the architecture compiled for, after clamping),
    ``virtual`` (True when only PTX for a lower architecture could be made) and the log."""

    name: str
    ptx: str
    cubin: bytes | None
    arch: int
    virtual: bool
    log: str
    from_cache: bool = False


def _nvrtc():
    """The ``nvrtc`` bindings module, imported on first use."""
    mod = _state.get("nvrtc")
    if mod is None:
        try:
            from cuda.bindings import nvrtc as mod
        except ImportError:
            try:
                from cuda import nvrtc as mod  # cuda-python before 12.6
            except ImportError as exc:
                raise MXNetError("NVRTC is not available: install kiln[cuda] (cuda-bindings and "
                                 "nvidia-cuda-nvrtc): %s" % exc) from None
        _state["nvrtc"] = mod
    return mod


def _check(result, what):
    """Unpack a binding's (error, values...) tuple; raise MXNetError unless it succeeded."""
    err, rest = result[0], result[1:]
    if int(err) != 0:
        nv = _nvrtc()
        try:
            _, text = nv.nvrtcGetErrorString(err)
            text = text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # the message is only a courtesy
            text = str(err)
        raise MXNetError("NVRTC %s failed: %s" % (what, text))
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


def available():
    """True when NVRTC can be loaded here (cuda-bindings and the NVRTC library)."""
    try:
        version()
        return True
    except (MXNetError, OSError, RuntimeError) as exc:
        log.debug("NVRTC unavailable: %s", exc)
        return False


def version():
    """(major, minor) of the NVRTC library."""
    v = _state.get("version")
    if v is None:
        nv = _nvrtc()
        try:
            result = nv.nvrtcVersion()
        except (OSError, RuntimeError) as exc:  # the bindings load the library on first call
            raise MXNetError("NVRTC library not found: install nvidia-cuda-nvrtc (kiln[cuda]): %s" % exc) from None
        v = _state["version"] = tuple(int(x) for x in _check(result, "nvrtcVersion"))
    return v


def supported_archs():
    """The ``sm_XX`` numbers this NVRTC compiles for, ascending."""
    archs = _state.get("archs")
    if archs is None:
        archs = _state["archs"] = sorted(int(a) for a in _check(_nvrtc().nvrtcGetSupportedArchs(),
                                                                  "nvrtcGetSupportedArchs"))
    return list(archs)


def parse_arch(arch):
    """80, "80", "sm_80", "compute_80" or (8, 0) -> 80."""
    if arch is None:
        return DEFAULT_ARCH
    if isinstance(arch, tuple):
        return int(arch[0]) * 10 + int(arch[1])
    if isinstance(arch, int):
        return arch
    m = re.fullmatch(r"(?:sm_|compute_)?(\d+)[a-z]?", str(arch).strip())
    if m is None:
        raise MXNetError("unknown CUDA architecture %r (expected e.g. 'sm_80' or 80)" % (arch,))
    return int(m.group(1))


def clamp_arch(arch, supported=None):
    """(architecture to compile for, virtual): ``arch`` itself when NVRTC supports it, else
    the newest supported one below it with ``virtual`` True (PTX only). Older than every
    supported architecture: MXNetError."""
    want = parse_arch(arch)
    supported = supported_archs() if supported is None else sorted(supported)
    if want in supported:
        return want, False
    lower = [a for a in supported if a < want]
    if not lower:
        raise MXNetError("CUDA architecture sm_%d is older than any this NVRTC %s supports (%s)"
                         % (want, ".".join(map(str, version())) if supported is None else "",
                            ", ".join("sm_%d" % a for a in supported)))
    log.warning("NVRTC does not support sm_%d; compiling PTX for compute_%d (the driver JIT-compiles it)",
                want, lower[-1])
    return lower[-1], True


def numbered(source):
    """The source with line numbers, for error messages."""
    return "\n".join("%5d  %s" % (i, line) for i, line in enumerate(source.splitlines(), 1))


def _key(source, target, options, cubin):
    h = hashlib.sha256()
    parts = [str(CACHE_FORMAT), "%d.%d" % version(), target, "cubin" if cubin else "ptx"] + list(options) + [source]
    for part in parts:
        data = part.encode()
        h.update(b"%d:" % len(data))
        h.update(data)
    return h.digest()


def _compile(source, name, target, options, want_cubin):
    nv = _nvrtc()
    prog = _check(nv.nvrtcCreateProgram(source.encode(), (name + ".cu").encode(), 0, [], []), "nvrtcCreateProgram")
    try:
        opts = [("--gpu-architecture=" + target).encode()] + [o.encode() for o in options]
        result = nv.nvrtcCompileProgram(prog, len(opts), opts)
        size = _check(nv.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
        buf = b" " * size
        _check(nv.nvrtcGetProgramLog(prog, buf), "nvrtcGetProgramLog")
        text = buf.rstrip(b"\x00").decode(errors="replace")
        if int(result[0]) != 0:
            raise NVRTCCompileError("NVRTC could not compile CUDA kernel %r for %s:\n%s\nsource:\n%s"
                             % (name, target, text.strip(), numbered(source)))
        size = _check(nv.nvrtcGetPTXSize(prog), "nvrtcGetPTXSize")
        buf = b" " * size
        _check(nv.nvrtcGetPTX(prog, buf), "nvrtcGetPTX")
        ptx = buf.rstrip(b"\x00").decode()
        cubin = None
        if want_cubin:
            size = _check(nv.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
            cubin = b" " * size
            _check(nv.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return ptx, cubin, text
    finally:
        nv.nvrtcDestroyProgram(prog)


def _pack(arch, ptx, cubin):
    data = ptx.encode()
    return _PAYLOAD.pack(arch, len(data), len(cubin or b"")) + data + (cubin or b"")


def _unpack(payload):
    arch, n_ptx, n_cubin = _PAYLOAD.unpack_from(payload)
    if len(payload) != _PAYLOAD.size + n_ptx + n_cubin:
        return None
    at = _PAYLOAD.size
    return arch, payload[at:at + n_ptx].decode(), (payload[at + n_ptx:] if n_cubin else None)


def compile_cuda(source, name, arch=None, cubin=False, options=()):
    """Compile CUDA C ``source`` (kernels declared ``extern "C" __global__``) to a ``CudaModule``.

    ``arch``: the GPU architecture (``sm_80``, ``90``...; default sm_80), clamped as the
    module docstring says; ``cubin``: also produce a cubin (None when the architecture had
    to be replaced by a lower virtual one); ``options``: extra NVRTC options. A compile
    error raises MXNetError naming ``name``, with NVRTC's log and the numbered source.
    """
    want, virtual = clamp_arch(arch)
    target = ("compute_%d" if virtual else "sm_%d") % want
    want_cubin = bool(cubin) and not virtual
    options = tuple(options)
    key = _key(source, target, options, want_cubin)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _stats["memory_hits"] += 1
            return hit
    directory = cache_dir()
    path = os.path.join(directory, key.hex() + ".kptx") if directory else None
    payload = read_cache_file(path, key, _MAGIC, CACHE_FORMAT) if path else None
    unpacked = _unpack(payload) if payload is not None else None
    if unpacked is not None:
        _, ptx, bin_ = unpacked
        mod = CudaModule(name, ptx, bin_, want, virtual, "", True)
        stat = "disk_hits"
    else:
        t0 = time.perf_counter()
        ptx, bin_, text = _compile(source, name, target, options, want_cubin)
        seconds = time.perf_counter() - t0
        log.debug("NVRTC compiled %s for %s in %.3f s (%d bytes of PTX)", name, target, seconds, len(ptx))
        if text.strip():
            log.debug("NVRTC log for %s:\n%s", name, text)
        if path:
            write_cache_file(path, key, _pack(want, ptx, bin_), _MAGIC, CACHE_FORMAT)
        mod = CudaModule(name, ptx, bin_, want, virtual, text)
        stat = "misses"
        with _lock:
            _stats["compile_seconds"] += seconds
    with _lock:
        _stats[stat] += 1
        _cache[key] = mod
    return mod


def cache_stats():
    """Counts of memory hits, disk hits and compilations, and seconds spent compiling."""
    with _lock:
        return dict(_stats)


def clear_memory_cache():
    with _lock:
        _cache.clear()
