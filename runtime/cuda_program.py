"""Compiled programs on a CUDA device: the plain data the compiler hands over, and running it.

A ``CudaProgramSpec`` is the CUDA counterpart of ``program.ProgramSpec``: the CUDA C of
every kernel (one source, compiled once per device), the same slot table (external
slots bound to device arrays, internal slots at offsets in one device arena, laid out
per batch size for run-time sizes), and per entry the launches in order, each a
``__global__`` function with the slots of its pointer parameters and a ``Launch``
record saying how many blocks it needs.

``CudaProgram(spec, device)`` runs it on a *device*: an object with ``alloc``,
``free``, ``copy_in``, ``copy_out``, ``memset``, ``module(source, name).function(f)``,
``launch(function, grid, block, shared_bytes, pointers)`` and ``synchronize``:
``runtime/cuda.py``'s driver-API device on a GPU, or a CPU emulation in the tests.
Every bound array is checked against its slot (shape, dtype, device) before any
kernel is launched.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from .errors import MXNetError
from .program import ALIGN, SlotSpec, symbol_index

log = logging.getLogger(__name__)

MAX_GRID = 1 << 16  # blocks beyond which grid-stride loops take the rest


@dataclass(frozen=True)
class Launch:
    """One ``__global__`` function launch: 1-D blocks of ``block`` threads and a 1-D grid of
    ``ceil(work / per_block)`` blocks clamped to [1, ``max_grid``], where ``work`` is
    ``work_scale * prod(dims[k] for k in work_dims)`` (``work_dims`` empty for static
    kernels). Every kernel loops grid-stride, so a clamped grid is still correct.
    ``shared_bytes`` is dynamic shared memory (kiln uses static shared arrays: 0)."""

    function: str
    block: int
    work_scale: int
    per_block: int
    work_dims: tuple = ()
    max_grid: int = MAX_GRID
    shared_bytes: int = 0

    def grid(self, dims=None):
        work = self.work_scale
        for k in self.work_dims:
            work *= int(dims[k])
        return max(1, min(self.max_grid, -(-work // self.per_block)))


@dataclass
class CudaProgramSpec:
    """``entries``: entry name -> [(Launch, [slot index per pointer parameter])] in run order."""

    name: str
    source: str
    entries: dict
    slots: list
    arena_bytes: int
    report: dict = field(default_factory=dict)
    dims_slot: str | None = None
    arena_scale: int = 0

    def external_names(self):
        return [s.name for s in self.slots if s.external]


class DeviceArray:
    """A dense row-major array in device memory (the device owns the pointer's lifetime
    through ``owner``, which frees it when the array is no longer referenced)."""

    __slots__ = ("device", "ptr", "shape", "dtype", "owner", "__weakref__")

    def __init__(self, device, ptr, shape, dtype, owner=None):
        self.device, self.ptr = device, int(ptr)
        self.shape, self.dtype = tuple(int(d) for d in shape), np.dtype(dtype)
        self.owner = owner

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    def view(self, offset_bytes, shape):
        """A dense sub-array sharing this memory (``offset_bytes`` from the start); it keeps the
        allocation alive."""
        view = DeviceArray(self.device, self.ptr + int(offset_bytes), shape, self.dtype, self.owner)
        if offset_bytes < 0 or offset_bytes + view.nbytes > self.nbytes:
            raise MXNetError("view of %d bytes at offset %d is outside an array of %d bytes"
                             % (view.nbytes, offset_bytes, self.nbytes))
        return view

    @classmethod
    def empty(cls, device, shape, dtype):
        arr = cls(device, 0, shape, dtype)
        arr.owner = _Allocation(device, max(arr.nbytes, 1))
        arr.ptr = arr.owner.ptr
        return arr

    @classmethod
    def from_numpy(cls, device, array):
        array = np.require(array, requirements="C")  # keeps 0-d arrays 0-d
        out = cls.empty(device, array.shape, array.dtype)
        if array.nbytes:
            device.copy_in(out.ptr, array)
        return out

    def numpy(self):
        out = np.empty(self.shape, self.dtype)
        if out.nbytes:
            self.device.copy_out(out, self.ptr)
        return out


class _Allocation:
    """Device memory returned to the device's pool when the last reference goes."""

    __slots__ = ("device", "ptr", "nbytes")

    def __init__(self, device, nbytes):
        self.device, self.nbytes = device, int(nbytes)
        self.ptr = device.alloc(self.nbytes)

    def __del__(self):
        try:
            self.device.free(self.ptr)
        except Exception:  # noqa: BLE001 - interpreter shutdown: the device is gone already
            pass


class CudaProgram:
    """A ``CudaProgramSpec`` loaded on a device with its arena; ``run(entry)`` launches it."""

    def __init__(self, spec, device):
        self.spec, self.device = spec, device
        module = device.module(spec.source, spec.name)
        self._functions = {}
        self._calls = {}
        for entry, launches in spec.entries.items():
            calls = []
            for launch, slots in launches:
                fn = self._functions.get(launch.function)
                if fn is None:
                    fn = self._functions[launch.function] = module.function(launch.function)
                calls.append((fn, launch, list(slots)))
            self._calls[entry] = calls
        self._index = {s.name: i for i, s in enumerate(spec.slots) if s.external}
        self._bound = {}
        self._pointers = [0] * len(spec.slots)
        self._aliases = [(i, s.alias_of) for i, s in enumerate(spec.slots) if s.alias_of is not None]
        self._dims = self._index.get(spec.dims_slot) if spec.dims_slot else None
        self._scaled = spec.arena_scale > 0 or any(s.offset_scale for s in spec.slots)
        self._scale = None
        self.arena = None
        if not self._scaled:
            self._layout(0)

    def _layout(self, scale):
        spec = self.spec
        self.arena = _Allocation(self.device, max(spec.arena_bytes + spec.arena_scale * scale, ALIGN))
        for i, s in enumerate(spec.slots):
            if not s.external:
                self._pointers[i] = self.arena.ptr + s.offset + s.offset_scale * scale
        self._scale = scale

    @property
    def jit_stats(self):
        return {"backend": "cuda", "device": repr(self.device)}

    def has_slot(self, name):
        return name in self._index

    def bind(self, name, array):
        """Point external slot ``name`` at ``array`` (a DeviceArray of this device)."""
        idx = self._index.get(name)
        if idx is None:
            raise MXNetError("program %s has no external slot %r" % (self.spec.name, name))
        if not isinstance(array, DeviceArray) or array.device is not self.device:
            raise MXNetError("slot %r needs an array on the program's device, got %r" % (name, array))
        slot = self.spec.slots[idx]
        if array.dtype != np.dtype(slot.dtype) or len(array.shape) != len(slot.shape):
            raise MXNetError("slot %r expects %s of rank %d, got %s %s"
                             % (name, slot.dtype, len(slot.shape), array.dtype, array.shape))
        self._bound[idx] = array

    def call(self, entry, arrays, dims=None):
        """Bind ``arrays`` to the external slots in slot order and run ``entry``."""
        if len(arrays) != len(self._index):
            raise MXNetError("program %s takes %d arrays, got %d" % (self.spec.name, len(self._index), len(arrays)))
        for name, array in zip(self._index, arrays):
            self.bind(name, array)
        self.run(entry, dims)

    def run(self, entry, dims=None):
        """Launch ``entry``'s kernels in order. ``dims``: the host values of the dims slot's
        array (needed for grid sizes when the program has run-time sizes)."""
        calls = self._calls.get(entry)
        if calls is None:
            raise MXNetError("program %s has no entry %r" % (self.spec.name, entry))
        missing = [self.spec.slots[i].name for i in self._index.values() if i not in self._bound]
        if missing:
            raise MXNetError("program %s: arrays not bound for %s" % (self.spec.name, missing))
        if self._dims is not None and dims is None:
            dims = self._bound[self._dims].numpy()
        values = [int(v) for v in dims] if dims is not None else None
        for i, arr in self._bound.items():
            _check(self.spec.slots[i], arr, values, self.spec.name)
            self._pointers[i] = arr.ptr
        if self._scaled and values[0] != self._scale:
            self._layout(values[0])
        for i, target in self._aliases:
            self._pointers[i] = self._pointers[target]
        ptrs = self._pointers
        for fn, launch, slots in calls:
            self.device.launch(fn, launch.grid(values), launch.block, launch.shared_bytes, itemgetter(*slots)(ptrs)
                               if len(slots) > 1 else [ptrs[s] for s in slots])


def _check(slot, array, dims, program):
    want = tuple(dims[symbol_index(d)] if isinstance(d, str) else d for d in slot.shape)
    if array.shape != want:
        raise MXNetError("program %s: slot %r expects shape %s, got %s" % (program, slot.name, want, array.shape))


__all__ = ["CudaProgram", "CudaProgramSpec", "DeviceArray", "Launch", "MAX_GRID", "SlotSpec"]
