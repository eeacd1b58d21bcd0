"""Compiled programs as the runtime sees them, and running them on CPU memory.

A ``ProgramSpec`` is plain data the compiler hands over: LLVM IR text, the
entry functions, and a slot table. External slots are bound to caller arrays
(arguments, outputs, gradients); internal slots live at fixed offsets in one
arena. Every bound array is checked against its slot (shape, dtype, layout)
before any native code runs.

Shape-generic programs (``compiler/generic.py``) have symbolic slot shapes: a
dimension may be a string ``"$k"``, meaning element k of the int64 array bound
to the program's ``dims_slot``, which the kernels read their sizes from. Each
run checks every symbolic dimension against that array, so native code never
sees memory that disagrees with the sizes it loops over.

Such a program may also have internal slots of symbolic size (a dynamic batch,
``compiler/symbolic_sizes.py``): slot ``i`` then sits at ``offset + offset_scale *
dims[0]`` in an arena of ``arena_bytes + arena_scale * dims[0]`` bytes, laid out again
whenever ``dims[0]`` changes.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np

from .errors import MXNetError
from .llvm_jit import compile_ir

ALIGN = 64
_from_buffer, _addressof = ctypes.c_byte.from_buffer, ctypes.addressof


def address(array):
    """Data pointer of a checked (C-contiguous, writeable) array; ~8x cheaper than
    ``array.ctypes.data``, which dominated the cost of running a small program."""
    try:
        return _addressof(_from_buffer(array))
    except (TypeError, ValueError):  # empty arrays have no byte to point at
        return array.ctypes.data


@dataclass
class SlotSpec:
    name: str
    shape: tuple
    dtype: str
    external: bool
    offset: int = 0  # arena byte offset of an internal slot
    alias_of: int | None = None  # an internal slot that is another slot's storage under another shape
    offset_scale: int = 0  # more bytes of offset per unit of the program's scale (dims[0])

    def __post_init__(self):
        # compared with ndarray.shape on every run; "$k" is runtime size k (shape-generic programs)
        self.shape = tuple(d if isinstance(d, str) else int(d) for d in self.shape)

    @property
    def symbolic(self):
        return any(isinstance(d, str) for d in self.shape)

    @property
    def nbytes(self):
        if self.symbolic:
            raise MXNetError("slot %r has a symbolic shape %s and no fixed size" % (self.name, self.shape))
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


def symbol_index(d):
    """k for the symbolic dimension ``"$k"``."""
    if not (isinstance(d, str) and d.startswith("$") and d[1:].isdigit()):
        raise MXNetError("bad symbolic dimension %r" % (d,))
    return int(d[1:])


@dataclass
class ProgramSpec:
    name: str
    llvm_ir: str
    entries: list
    slots: list
    arena_bytes: int
    report: dict = field(default_factory=dict)
    dims_slot: str | None = None  # external int64 slot holding the sizes "$k" of symbolic slots
    arena_scale: int = 0  # more arena bytes per unit of the program's scale (dims[0])

    @property
    def scaled(self):
        """Whether the arena's layout depends on the scale dims[0]."""
        return self.arena_scale > 0 or any(s.offset_scale or (s.symbolic and not s.external) for s in self.slots)

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
        self._table = (ctypes.c_void_p * max(len(spec.slots), 1))()
        self._external = [i for i, s in enumerate(spec.slots) if s.external]
        self._aliases = [(i, s.alias_of) for i, s in enumerate(spec.slots) if s.alias_of is not None]
        self._scale = None  # the scale the arena is laid out for (scaled programs)
        self._layout(0)
        self._bound = {}
        self._index = {spec.slots[i].name: i for i in self._external}
        self._dtypes = {i: np.dtype(spec.slots[i].dtype) for i in self._external}
        self._init_symbolic(spec)
        self._table_address = ctypes.addressof(self._table)
        # per external slot: (index, slot, dtype, expected-shape getter or None), for run()
        self._checks = [(i, spec.slots[i], self._dtypes[i], self._symbolic.get(i)) for i in self._external
                        if i != self._dims_slot]  # the dims array is checked by _dims_values()

    def _layout(self, scale):
        """Allocate the arena for ``scale`` and point every internal slot into it."""
        spec = self.spec
        self.arena = aligned_empty(max(spec.arena_bytes + spec.arena_scale * scale, 1))
        base = self.arena.ctypes.data
        for i, s in enumerate(spec.slots):
            if not s.external:
                self._table[i] = base + s.offset + s.offset_scale * scale
        self._scale = scale

    def _init_symbolic(self, spec):
        """Precompute, per symbolic slot, an itemgetter building its expected shape from
        ``dims + literals`` so that each run's check is a tuple comparison."""
        self._dims_slot = None
        self._symbolic = {}
        sym = [i for i in self._external if spec.slots[i].symbolic]
        self._scaled = spec.scaled
        if spec.dims_slot is None:
            if sym or self._scaled:
                raise MXNetError("program %s: symbolic slots without a dims slot" % spec.name)
            return
        d = self._index.get(spec.dims_slot)
        dslot = spec.slots[d] if d is not None else None
        if dslot is None or dslot.dtype != "int64" or len(dslot.shape) != 1 or dslot.symbolic:
            raise MXNetError("program %s: dims slot %r must be an external 1-d int64 slot"
                             % (spec.name, spec.dims_slot))
        n = dslot.shape[0]
        self._dims_slot = d
        literals = sorted({x for i in sym for x in spec.slots[i].shape if not isinstance(x, str)})
        self._literals = literals
        for i in sym:
            idx = []
            for x in spec.slots[i].shape:
                if isinstance(x, str):
                    k = symbol_index(x)
                    if k >= n:
                        raise MXNetError("program %s: slot %r uses size %s of %d"
                                         % (spec.name, spec.slots[i].name, x, n))
                    idx.append(k)
                else:
                    idx.append(n + literals.index(x))
            get = itemgetter(*idx)
            self._symbolic[i] = get if len(idx) > 1 else (lambda v, _g=get: (_g(v),))

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
        slot = self.spec.slots[idx]
        # a symbolic shape is checked against the dims in run(); here its rank
        check_array(array, slot, self._dtypes[idx],
                    shape=array.shape if slot.symbolic and np.ndim(array) == len(slot.shape) else None)
        self._table[idx] = address(array)
        self._bound[idx] = array  # keep it alive while the table points at it

    def call(self, entry, arrays):
        """Bind ``arrays`` to the external slots in slot order and run ``entry``: the cheap path
        for single-operator programs (each array is checked once, in ``run``)."""
        if len(arrays) != len(self._external):
            raise MXNetError("program %s takes %d arrays, got %d" % (self.spec.name, len(self._external), len(arrays)))
        for i, a in zip(self._external, arrays):
            self._bound[i] = a
        self.run(entry)

    def _slot_index(self, name):
        idx = self._index.get(name)
        if idx is None:
            raise MXNetError("program %s has no external slot %r" % (self.spec.name, name))
        return idx

    def run(self, entry):
        bound = self._bound
        if len(bound) != len(self._external):
            missing = [self.spec.slots[i].name for i in self._external if i not in bound]
            raise MXNetError("program %s: arrays not bound for %s" % (self.spec.name, missing))
        values = self._dims_values() if self._dims_slot is not None else None
        if self._scaled and values[0] != self._scale:
            self._layout(values[0])
        table = self._table
        for i, slot, dtype, get in self._checks:  # a bound array may have been resized since bind()
            arr = bound[i]
            if get is None:
                check_array(arr, slot, dtype)
            else:
                check_array(arr, slot, dtype, get(values), self.spec.name)
            table[i] = address(arr)
        for i, target in self._aliases:  # after binding: an alias may view an external array
            self._table[i] = self._table[target]
        fn = self._entries.get(entry)
        if fn is None:
            raise MXNetError("program %s has no entry %r" % (self.spec.name, entry))
        fn(self._table_address)

    def _dims_values(self):
        """The bound dims as Python ints followed by the literal sizes (what the getters index)."""
        i = self._dims_slot
        arr = self._bound[i]
        check_array(arr, self.spec.slots[i], self._dtypes[i])
        self._table[i] = address(arr)
        values = arr.tolist()
        if values and min(values) < 0:
            raise MXNetError("program %s: negative size in %r: %s" % (self.spec.name, self.spec.slots[i].name, values))
        return values + self._literals


def check_array(array, slot, dtype=None, shape=None, program=None):
    """Raise unless ``array`` fits ``slot``; runs before every native call (kept cheap).

    ``shape``: the expected shape of a symbolic slot under the bound dims.
    """
    if not isinstance(array, np.ndarray):
        raise MXNetError("slot %r needs a numpy array, got %s" % (slot.name, type(array).__name__))
    if array.shape != (slot.shape if shape is None else shape):
        if shape is None:
            raise MXNetError("slot %r expects shape %s, got %s" % (slot.name, tuple(slot.shape), array.shape))
        raise MXNetError("%sslot %r expects shape %s = %s under the bound sizes, got %s"
                         % ("program %s: " % program if program else "", slot.name,
                            "(%s)" % ", ".join(str(d) for d in slot.shape), tuple(shape), array.shape))
    if array.dtype != (dtype if dtype is not None else np.dtype(slot.dtype)):
        raise MXNetError("slot %r expects dtype %s, got %s" % (slot.name, slot.dtype, array.dtype.name))
    if not array.flags.c_contiguous:
        raise MXNetError("slot %r needs a C-contiguous array" % slot.name)
    if not array.flags.writeable:
        raise MXNetError("slot %r needs a writeable array" % slot.name)


def load_program(spec, opt_level=3):
    return LoadedProgram(spec, opt_level)
