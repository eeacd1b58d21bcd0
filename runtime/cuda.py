"""NVIDIA GPUs through the CUDA driver API (``cuda.bindings.driver``): the device object
``cuda_program.CudaProgram`` runs on.

One ``DriverDevice`` per GPU ordinal (``device(i)``): the device's primary context (made
current on whichever thread calls in, since kiln's engine runs work on its own threads),
one stream that every copy and launch of the device goes to (so they run in order),
a caching allocator (freed blocks are kept by size class and reused; on an out-of-memory
error the cache is released and the allocation retried), modules compiled by NVRTC for
the device's compute capability (``nvrtc.py``, cached in memory and on disk) and loaded
once per source. Copies between host and device are synchronous with respect to the host
(the numpy buffer may be reused at once); launches and device-to-device copies are
asynchronous until ``synchronize`` or a copy back, so a fault inside a kernel surfaces there;
``KILN_CUDA_SYNC=1`` waits after every launch, so the error names the kernel.

cuda-bindings is imported on first use: without it, or without a driver,
``device_count()`` is 0 and kiln runs on the CPU.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading

from .errors import MXNetError

log = logging.getLogger(__name__)

SMALL_CLASS = 512  # allocations up to 1 MiB round up to a multiple of this; larger ones to a power of two
LARGE_FROM = 1 << 20

_lock = threading.Lock()
_devices = {}
_state = {}


def _driver():
    """The ``cuda.bindings.driver`` module with the driver initialised, or MXNetError."""
    if "driver" in _state:
        return _state["driver"]
    if "error" in _state:
        raise MXNetError(_state["error"])
    try:
        from cuda.bindings import driver as cu
        result = cu.cuInit(0)
        err = result[0] if isinstance(result, tuple) else result
        if err != cu.CUresult.CUDA_SUCCESS:
            raise RuntimeError("cuInit failed: %s" % _error_text(cu, err))
    except Exception as exc:  # noqa: BLE001 - no package, no driver, no GPU: all mean "no CUDA here"
        _state["error"] = "CUDA is not available (%s: %s); install an NVIDIA driver and `pip install 'kiln[cuda]'`" \
            % (type(exc).__name__, exc)
        raise MXNetError(_state["error"]) from None
    _state["driver"] = cu
    return cu


def _error_text(cu, err):
    try:
        res, text = cu.cuGetErrorString(err)
        if res == cu.CUresult.CUDA_SUCCESS and text:
            return "%s (%s)" % (text.decode(errors="replace"), getattr(err, "name", err))
    except Exception:  # noqa: BLE001 - describing an error must not raise another
        pass
    return str(err)


def _check(result, what):
    """The values of a driver call's result tuple; MXNetError naming ``what`` on failure."""
    cu = _state["driver"]
    if not isinstance(result, tuple):
        result = (result,)
    err = result[0]
    if err != cu.CUresult.CUDA_SUCCESS:
        raise MXNetError("CUDA driver: %s failed: %s" % (what, _error_text(cu, err)))
    return result[1] if len(result) == 2 else result[1:]


def install_devices(devices):
    """Serve ``gpu(0..n-1)`` from these device objects instead of the driver's GPUs; None
    goes back to the driver. For other implementations of the device interface, such as the
    CPU emulation of CUDA that kiln's tests run GPU code paths on. Returns the previous table."""
    with _lock:
        previous = _state.get("installed")
        _state["installed"] = None if devices is None else list(devices)
        return previous


def device_count():
    """Number of CUDA GPUs this process can use (0 without cuda-bindings, a driver or a GPU)."""
    installed = _state.get("installed")
    if installed is not None:
        return len(installed)
    try:
        cu = _driver()
        return int(_check(cu.cuDeviceGetCount(), "cuDeviceGetCount"))
    except MXNetError as err:
        log.debug("%s", err)
        return 0


def device(ordinal=0):
    """The ``DriverDevice`` of GPU ``ordinal`` (created once per process)."""
    installed = _state.get("installed")
    dev = _devices.get(ordinal) if installed is None else None
    if dev is not None:  # the common case: no lock, no driver call
        return dev
    with _lock:
        installed = _state.get("installed")
        if installed is not None:
            if not 0 <= ordinal < len(installed):
                raise MXNetError("gpu(%d) does not exist: %d device(s) installed" % (ordinal, len(installed)))
            return installed[ordinal]
        dev = _devices.get(ordinal)
        if dev is None:
            count = device_count()
            if not 0 <= ordinal < count:
                raise MXNetError("gpu(%d) does not exist: this process sees %d CUDA device(s)%s"
                                 % (ordinal, count, "" if count else " (%s)" % _state.get("error", "no GPU")))
            dev = _devices[ordinal] = DriverDevice(ordinal)
        return dev


def synchronize_all():
    """Wait for the work queued on every GPU this process has used (none: returns at once)."""
    installed = _state.get("installed")
    for dev in installed if installed is not None else list(_devices.values()):
        dev.synchronize()


def size_class(nbytes):
    """The rounded size an allocation of ``nbytes`` is served from (blocks of one class are
    interchangeable, so freed ones are reused)."""
    nbytes = max(int(nbytes), 1)
    if nbytes <= LARGE_FROM:
        return -(-nbytes // SMALL_CLASS) * SMALL_CLASS
    return 1 << (nbytes - 1).bit_length()


class _Module:
    def __init__(self, device, handle, name):
        self.device, self.handle, self.name = device, handle, name
        self._functions = {}

    def function(self, fname):
        fn = self._functions.get(fname)
        if fn is None:
            self.device._activate()
            fn = _check(self.device.cu.cuModuleGetFunction(self.handle, fname.encode()),
                        "cuModuleGetFunction(%s) in module %s" % (fname, self.name))
            self._functions[fname] = fn
            self.device.kernel_names[id(fn)] = "kernel %s of %s" % (fname, self.name)
        return fn


class DriverDevice:
    """One GPU: context, stream, caching allocator, module cache, launches."""

    def __init__(self, ordinal):
        cu = _driver()
        self.cu, self.ordinal = cu, ordinal
        self.handle = _check(cu.cuDeviceGet(ordinal), "cuDeviceGet(%d)" % ordinal)
        attr = cu.CUdevice_attribute
        major = _check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, self.handle),
                       "cuDeviceGetAttribute")
        minor = _check(cu.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, self.handle),
                       "cuDeviceGetAttribute")
        self.arch = "sm_%d%d" % (major, minor)
        self.context = _check(cu.cuDevicePrimaryCtxRetain(self.handle), "cuDevicePrimaryCtxRetain")
        self._activate()
        self.stream = _check(cu.cuStreamCreate(0), "cuStreamCreate")
        self._lock = threading.Lock()
        self._free = {}  # size class -> [device pointers]
        self._sizes = {}  # live pointer -> size class
        self._modules = {}
        self.kernel_names = {}  # id(CUfunction) -> what errors call it
        # like CUDA_LAUNCH_BLOCKING: wait after every launch so a kernel's fault names that kernel
        self.sync_launches = os.environ.get("KILN_CUDA_SYNC", "0") not in ("", "0")
        self.stats = {"allocated": 0, "cached": 0, "reused": 0, "launches": 0}
        log.info("gpu(%d): compute capability %s", ordinal, self.arch)

    def __repr__(self):
        return "DriverDevice(gpu(%d), %s)" % (self.ordinal, self.arch)

    def _activate(self):
        _check(self.cu.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")

    # ---- memory ----
    def alloc(self, nbytes):
        size = size_class(nbytes)
        with self._lock:
            free = self._free.get(size)
            if free:
                ptr = free.pop()
                self._sizes[ptr] = size
                self.stats["cached"] -= size
                self.stats["reused"] += 1
                return ptr
        self._activate()
        result = self.cu.cuMemAlloc(size)
        if result[0] == self.cu.CUresult.CUDA_ERROR_OUT_OF_MEMORY:
            self.release_cache()
            result = self.cu.cuMemAlloc(size)
        ptr = int(_check(result, "cuMemAlloc(%d bytes) on gpu(%d)" % (size, self.ordinal)))
        with self._lock:
            self._sizes[ptr] = size
            self.stats["allocated"] += size
        return ptr

    def free(self, ptr):
        """Keep the block for reuse (after the work queued on the stream that may use it)."""
        with self._lock:
            size = self._sizes.pop(int(ptr), None)
            if size is None:
                raise MXNetError("gpu(%d): free of %#x, which this device did not allocate" % (self.ordinal, ptr))
            self._free.setdefault(size, []).append(int(ptr))
            self.stats["cached"] += size

    def release_cache(self):
        """Give every cached free block back to the driver."""
        self.synchronize()
        with self._lock:
            blocks = [(size, p) for size, ptrs in self._free.items() for p in ptrs]
            self._free.clear()
        for size, p in blocks:
            _check(self.cu.cuMemFree(p), "cuMemFree")
            with self._lock:
                self.stats["allocated"] -= size
                self.stats["cached"] -= size

    def copy_in(self, ptr, array):
        self._activate()
        _check(self.cu.cuMemcpyHtoDAsync(int(ptr), array.ctypes.data, array.nbytes, self.stream), "cuMemcpyHtoDAsync")
        self.synchronize()  # the host buffer may be reused as soon as this returns

    def copy_out(self, array, ptr):
        self._activate()
        _check(self.cu.cuMemcpyDtoHAsync(array.ctypes.data, int(ptr), array.nbytes, self.stream), "cuMemcpyDtoHAsync")
        self.synchronize()

    def copy(self, dst, src, nbytes):
        """Device-to-device copy on this device's stream."""
        self._activate()
        _check(self.cu.cuMemcpyDtoDAsync(int(dst), int(src), int(nbytes), self.stream), "cuMemcpyDtoDAsync")

    def memset(self, ptr, byte, nbytes):
        self._activate()
        _check(self.cu.cuMemsetD8Async(int(ptr), int(byte), int(nbytes), self.stream), "cuMemsetD8Async")

    # ---- code ----
    def module(self, source, name):
        """The loaded module of CUDA C ``source`` (NVRTC for this device's architecture)."""
        from . import nvrtc
        key = (hashlib.sha256(source.encode()).hexdigest(), name)
        mod = self._modules.get(key)
        if mod is None:
            compiled = nvrtc.compile_cuda(source, name, self.arch, cubin=True)
            image = compiled.cubin if compiled.cubin is not None else compiled.ptx.encode() + b"\0"
            self._activate()
            handle = _check(self.cu.cuModuleLoadData(image), "cuModuleLoadData(%s for %s)" % (name, self.arch))
            mod = self._modules[key] = _Module(self, handle, name)
        return mod

    def launch(self, function, grid, block, shared_bytes, pointers):
        """Queue ``function`` on the stream with the device pointers as its parameters."""
        n = len(pointers)
        values = (ctypes.c_void_p * max(n, 1))(*pointers)
        base = ctypes.addressof(values)
        params = (ctypes.c_void_p * max(n, 1))(*[base + i * ctypes.sizeof(ctypes.c_void_p) for i in range(n)])
        gx, gy, gz = _dim3(grid)
        bx, by, bz = _dim3(block)
        self._activate()
        what = self.kernel_names.get(id(function), "a kernel")
        _check(self.cu.cuLaunchKernel(function, gx, gy, gz, bx, by, bz, int(shared_bytes), self.stream,
                                      ctypes.addressof(params), 0),
               "cuLaunchKernel(%s, grid %s, block %s)" % (what, grid, block))
        self.stats["launches"] += 1
        if self.sync_launches:
            _check(self.cu.cuStreamSynchronize(self.stream), "%s on gpu(%d) (KILN_CUDA_SYNC=1)" % (what, self.ordinal))

    def synchronize(self):
        self._activate()
        _check(self.cu.cuStreamSynchronize(self.stream), "cuStreamSynchronize on gpu(%d)" % self.ordinal)


def _dim3(d):
    if isinstance(d, int):
        return d, 1, 1
    d = tuple(int(x) for x in d) + (1, 1)
    return d[0], d[1], d[2]
