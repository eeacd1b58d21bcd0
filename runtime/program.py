"""Compiled programs as the runtime sees them, and running them on CPU memory.

A ``ProgramSpec`` is plain data the compiler hands over: LLVM IR text, the
entry functions, and a slot table. External slots are bound to caller arrays
(arguments, outputs, gradients); internal slots live at fixed offsets in one
arena. Every bound array is checked against its slot (shape, dtype, layout)
before any native code runs.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

import numpy as np

from .errors import MXNetError
from .llvm_jit import compile_ir

ALIGN = 64


@dataclass
class SlotSpec:
    name: str
    shape: tuple
    dtype: str
    external: bool
    offset: int = 0  # arena byte offset of an internal slot
    alias_of: int | None = None  # an internal slot that is another slot's storage under another shape

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)  # compared with ndarray.shape on every run

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class ProgramSpec:
    name: str
    llvm_ir: str
    entries: list
    slots: list
    arena_bytes: int
    report: dict = field(default_factory=dict)

    def external_names(self):
        return [s.name for s in self.slots if s.external]


def aligned_empty(nbytes):
    raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes]


class LoadedProgram:
    """A JIT-compiled program with its arena; ``run(entry, arrays)`` calls one entry."""

    def __init__(self, spec, opt_level=3):
        self.spec = spec
        self.module = compile_ir(spec.llvm_ir, opt_level)
        self._entries = {e: self.module.entry(e) for e in spec.entries}
        self.arena = aligned_empty(max(spec.arena_bytes, 1))
        self._table = (ctypes.c_void_p * max(len(spec.slots), 1))()
        base = self.arena.ctypes.data
        self._external = []
        self._aliases = [(i, s.alias_of) for i, s in enumerate(spec.slots) if s.alias_of is not None]
        for i, s in enumerate(spec.slots):
            if s.external:
                self._external.append(i)
            else:
                self._table[i] = base + s.offset
        self._bound = {}
        self._index = {spec.slots[i].name: i for i in self._external}
        self._dtypes = {i: np.dtype(spec.slots[i].dtype) for i in self._external}

    @property
    def jit_stats(self):
        """How the native code was obtained: seconds spent and whether the disk cache had it."""
        return {"seconds": self.module.compile_seconds, "cache_hit": self.module.from_cache}

    def has_slot(self, name):
        return any(self.spec.slots[i].name == name for i in self._external)

    def bind(self, name, array):
        """Point external slot ``name`` at ``array`` after checking it."""
        idx = self._slot_index(name)
        if self._bound.get(idx) is array:
            return  # run() re-checks every bound array anyway
        check_array(array, self.spec.slots[idx], self._dtypes[idx])
        self._table[idx] = array.ctypes.data
        self._bound[idx] = array  # keep it alive while the table points at it

    def _slot_index(self, name):
        idx = self._index.get(name)
        if idx is None:
            raise MXNetError("program %s has no external slot %r" % (self.spec.name, name))
        return idx

    def run(self, entry):
        missing = [self.spec.slots[i].name for i in self._external if i not in self._bound]
        if missing:
            raise MXNetError("program %s: arrays not bound for %s" % (self.spec.name, missing))
        for i in self._external:  # a bound array may have been resized since bind()
            arr = self._bound[i]
            check_array(arr, self.spec.slots[i], self._dtypes[i])
            self._table[i] = arr.ctypes.data
        for i, target in self._aliases:  # after binding: an alias may view an external array
            self._table[i] = self._table[target]
        fn = self._entries.get(entry)
        if fn is None:
            raise MXNetError("program %s has no entry %r" % (self.spec.name, entry))
        fn(ctypes.addressof(self._table))


def check_array(array, slot, dtype=None):
    """Raise unless ``array`` fits ``slot``; runs before every native call (kept cheap)."""
    if not isinstance(array, np.ndarray):
        raise MXNetError("slot %r needs a numpy array, got %s" % (slot.name, type(array).__name__))
    if array.shape != slot.shape:
        raise MXNetError("slot %r expects shape %s, got %s" % (slot.name, tuple(slot.shape), array.shape))
    if array.dtype != (dtype if dtype is not None else np.dtype(slot.dtype)):
        raise MXNetError("slot %r expects dtype %s, got %s" % (slot.name, slot.dtype, array.dtype.name))
    if not array.flags.c_contiguous:
        raise MXNetError("slot %r needs a C-contiguous array" % slot.name)
    if not array.flags.writeable:
        raise MXNetError("slot %r needs a writeable array" % slot.name)


def load_program(spec, opt_level=3):
    return LoadedProgram(spec, opt_level)
