"""Ahead-of-time builds: a compiled inference program -> a standalone shared library.

``build_library`` takes the ``ProgramSpec`` of ``compile_program(is_train=False)`` and
writes ``lib<name>.so`` (C ABI declared in ``<name>.h``, see ``aot_c.py``) plus the
weights file ``<name>.weights``, or with ``embed=True`` the weights inside the library.
The program's LLVM IR becomes an object file through llvmlite's target machine (host
CPU by default, or any CPU/feature set for portable builds); a generated C file holds
the model's tables, the weights reader, argument checks and a pthreads
``GOMP_parallel`` (the only OpenMP symbol kernels call), and the system C compiler
links them with ``-z defs`` and a version script exporting only ``kiln_*``: the
library needs nothing beyond the C library, libm and pthreads.

Weights file (little-endian): magic ``KILNWTS\\0``, u32 version (1), u32 count, then per
tensor u32 name length, UTF-8 name, u32 dtype code (MXNet's), u32 ndim, i64 dims[ndim],
u64 byte length, zero padding to the next multiple of 64 from the file start, data.
"""
from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
import tempfile

import numpy as np

from ..runtime.errors import MXNetError
from ..runtime.llvm_jit import optimize, target_machine
from . import aot_c

log = logging.getLogger(__name__)

DTYPE_CODES = {"float32": 0, "float64": 1, "float16": 2, "uint8": 3, "int32": 4, "int8": 5, "int64": 6,
               "bool": 7}
WEIGHTS_MAGIC = b"KILNWTS\0"
WEIGHTS_VERSION = 1
ALIGN = 64
MAX_NDIM = 8
EMITS = ("so", "obj", "ll")


def weights_bytes(weights):
    """The weights file for ``weights`` (list of (name, C-contiguous numpy array))."""
    out = bytearray(WEIGHTS_MAGIC + struct.pack("<II", WEIGHTS_VERSION, len(weights)))
    for name, arr in weights:
        raw = name.encode("utf-8")
        out += struct.pack("<I", len(raw)) + raw
        out += struct.pack("<II", DTYPE_CODES[arr.dtype.name], arr.ndim)
        out += struct.pack("<%dq" % arr.ndim, *arr.shape)
        out += struct.pack("<Q", arr.nbytes)
        out += bytes(-len(out) % ALIGN)
        out += np.ascontiguousarray(arr).tobytes()
    return bytes(out)


def _tensor(name, slot, shape, dtype):
    """A ``kiln_tensor`` row; ``shape`` holds ints and ``"$k"`` (size k of the size table)."""
    if dtype not in DTYPE_CODES:
        raise MXNetError("kiln compile: %r has dtype %s, which the C interface does not carry" % (name, dtype))
    if len(shape) > MAX_NDIM:
        raise MXNetError("kiln compile: %r has %d dims; the C interface carries at most %d"
                         % (name, len(shape), MAX_NDIM))
    dims = ", ".join("0" if isinstance(d, str) else str(int(d)) for d in shape) or "0"
    sym = ", ".join(str(int(d[1:])) if isinstance(d, str) else "-1" for d in shape) or "-1"
    return '{"%s", %d, %d, %d, {%s}, {%s}, %d}' % (name, slot, DTYPE_CODES[dtype], len(shape), dims, sym,
                                                   np.dtype(dtype).itemsize)


def max_batch(spec, table):
    """The largest batch size for which every size, byte count and arena offset of the
    program stays below 2**62 (the C runtime computes them in int64 without checks)."""
    limit = 1 << 62
    polys = [(b, a) for a, b in table.rows]
    polys += [table.byte_poly(s.shape, s.dtype) for s in spec.slots if s.symbolic]
    polys.append((spec.arena_bytes, spec.arena_scale))
    best = limit
    for c0, c1 in polys:
        if c1 > 0:
            best = min(best, (limit - max(c0, 0)) // c1)
    return max(best, 1)


def _c_name(name):
    if not name.isascii() or any(c in name for c in '"\\\n\r') or not name.isprintable():
        raise MXNetError("kiln compile: name %r cannot appear in the C interface (ASCII without quotes or "
                         "backslashes)" % name)
    return name


def _table(ctype, name, rows, inner=""):
    body = ",\n    ".join(rows) if rows else "{0}"
    return "static const %s %s[%d]%s = {\n    %s\n};\n" % (ctype, name, max(len(rows), 1), inner, body)


def generate_c(name, spec, info, inputs, weights, threads, embedded, table=None):
    """(C source, header) of the library for ``spec``.

    inputs: list of (name, shape, dtype) fed by the caller, ``"$0"`` at a run-time batch
    axis; weights: list of (name, array) the weights file holds; info: ``compile_program``'s
    info (output slots and shapes); table: the ``SizeTable`` of a program compiled with a
    run-time batch size (``dynamic_batch.py``), else None.
    """
    slot = {s.name: i for i, s in enumerate(spec.slots) if s.external}
    if info.get("rng_key") or info.get("aux_updates") or info.get("head_grads"):
        raise MXNetError("kiln compile: the program has random operators or training state; only "
                         "deterministic inference graphs can be compiled ahead of time")
    covered = {n for n, _, _ in inputs} | {n for n, _ in weights} | set(info["outputs"]) | {spec.dims_slot}
    stray = [n for n in slot if n not in covered]
    if stray:
        raise MXNetError("kiln compile: program slots %s are neither inputs, weights nor outputs" % stray)
    in_rows = [_tensor(_c_name(n), slot.get(n, -1), shape, dtype) for n, shape, dtype in inputs]
    w_rows = [_tensor(_c_name(n), slot.get(n, -1), a.shape, a.dtype.name) for n, a in weights]
    out_rows = [_tensor(s, slot[s], shape, dtype)
                for s, shape, dtype in zip(info["outputs"], info["out_shapes"], info["out_dtypes"])]
    internal = [not s.external and s.alias_of is None for s in spec.slots]
    offsets = [str(s.offset) if own else "-1" for s, own in zip(spec.slots, internal)]
    scales = [str(s.offset_scale) if own else "0" for s, own in zip(spec.slots, internal)]
    aliases = [str(s.alias_of) if s.alias_of is not None else "-1" for s in spec.slots]
    rows = table.rows if table is not None else []
    parts = [aot_c.PRELUDE.replace("@NAME@", name),
             "#define KILN_NUM_SLOTS %d\n#define KILN_NUM_INPUTS %d\n#define KILN_NUM_WEIGHTS %d\n"
             "#define KILN_NUM_OUTPUTS %d\n#define KILN_ARENA_BYTES %dll\n#define KILN_ARENA_SCALE %dll\n"
             "#define KILN_THREADS %d\n#define KILN_EMBEDDED %d\n#define KILN_NUM_DIMS %d\n"
             "#define KILN_DIMS_SLOT %d\n#define KILN_MAX_BATCH %dll\n"
             % (len(spec.slots), len(inputs), len(weights), len(info["outputs"]), spec.arena_bytes,
                spec.arena_scale, threads, int(embedded), len(rows), slot.get(spec.dims_slot, -1),
                max_batch(spec, table) if table is not None else 1),
             _table("kiln_tensor", "kiln_inputs", in_rows), _table("kiln_tensor", "kiln_weights", w_rows),
             _table("kiln_tensor", "kiln_outputs", out_rows),
             _table("int64_t", "kiln_dim_rows", ["{%d, %d}" % r for r in rows] or ["{0, 0}"], "[2]"),
             _table("int64_t", "kiln_slot_offset", offsets), _table("int64_t", "kiln_slot_offset_scale", scales),
             _table("int", "kiln_slot_alias", aliases)]
    if embedded:
        parts.append('extern const unsigned char kiln_embedded_weights[] __attribute__((visibility("hidden")));\n'
                     'extern const unsigned char kiln_embedded_end[] __attribute__((visibility("hidden")));\n')
    else:
        parts.append("static const unsigned char kiln_embedded_weights[1];\n"
                     "static const unsigned char *const kiln_embedded_end = kiln_embedded_weights;\n")
    parts.append(aot_c.RUNTIME)

    def shape_text(shape):
        return table.describe(shape) if table is not None else str(tuple(int(d) for d in shape))

    def describe(rows):
        return "; ".join("%s %s %s" % (n, dt, shape_text(s)) for n, s, dt in rows) or "none"
    batch = ("chosen at run time: N below is the batch size of the inputs set, from 1 to %d"
             % max_batch(spec, table) if table is not None else "fixed (the shapes below)")
    header = aot_c.HEADER
    for key, value in (("@NAME@", name), ("@UNAME@", name.upper()), ("@THREADS@", str(threads)),
                       ("@BATCH@", batch),
                       ("@INPUTS@", describe(inputs)),
                       ("@OUTPUTS@", describe([("output%d" % i, s, d) for i, (s, d)
                                               in enumerate(zip(info["out_shapes"], info["out_dtypes"]))])),
                       ("@WEIGHTS@", "%d tensors, %d bytes" % (len(weights), sum(a.nbytes for _, a in weights)))):
        header = header.replace(key, value)
    return "".join(parts), header


def _incbin(path):
    quoted = path.replace("\\", "\\\\").replace('"', '\\"')
    return ('\t.section .rodata.kiln_weights,"a"\n\t.balign 64\n'
            "\t.globl kiln_embedded_weights\n\t.hidden kiln_embedded_weights\nkiln_embedded_weights:\n"
            '\t.incbin "%s"\n'
            "\t.globl kiln_embedded_end\n\t.hidden kiln_embedded_end\nkiln_embedded_end:\n"
            '\t.section .note.GNU-stack,"",@progbits\n' % quoted)


def c_compiler():
    """The system C compiler: ``$CC``, else ``cc``; MXNetError when there is none."""
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise MXNetError("no C compiler found (%s); install one (e.g. gcc) or use --emit obj / --emit ll" % cc)
    return path


def build_library(spec, info, inputs, weights, out_dir, name, cpu=None, features=None, opt_level=3,
                  emit="so", embed=False, threads=1, table=None):
    """Write the build for ``emit`` ('so', 'obj' or 'll') into ``out_dir``; returns the paths written.
    table: the SizeTable of a program with a run-time batch size (see ``generate_c``).

    The IR is optimised and emitted as position-independent code for ``cpu``/``features``
    (default: this host's); 'll' writes the optimised module as text."""
    if emit not in EMITS:
        raise MXNetError("--emit %r is not one of %s" % (emit, ", ".join(EMITS)))
    if not 0 <= opt_level <= 3:
        raise MXNetError("--opt-level %r is not 0-3" % (opt_level,))
    os.makedirs(out_dir, exist_ok=True)
    tm = target_machine(cpu, features, opt_level, reloc="pic")
    mod, tm = optimize(spec.llvm_ir, opt_level, tm)
    if emit == "ll":  # the optimised module, with the target's triple and data layout
        path = os.path.join(out_dir, name + ".ll")
        with open(path, "w") as f:
            f.write(str(mod))
        return [path]
    obj = tm.emit_object(mod)
    if emit == "obj":
        path = os.path.join(out_dir, name + ".o")
        with open(path, "wb") as f:
            f.write(obj)
        return [path]
    cc = c_compiler()
    source, header = generate_c(name, spec, info, inputs, weights, threads, embed, table)
    blob = weights_bytes(weights)
    written = []
    with tempfile.TemporaryDirectory(prefix="kiln-aot-") as tmp:
        files = {"c": os.path.join(tmp, name + ".c"), "o": os.path.join(tmp, name + "_program.o"),
                 "map": os.path.join(tmp, "exports.map"), "h": os.path.join(out_dir, name + ".h")}
        for key, data in (("c", source), ("map", "{ global: kiln_*; local: *; };\n"), ("h", header)):
            with open(files[key], "w") as f:
                f.write(data)
        written.append(files["h"])
        with open(files["o"], "wb") as f:
            f.write(obj)
        extra = []
        if embed:
            wpath, spath = os.path.join(tmp, name + ".weights"), os.path.join(tmp, "weights.S")
            with open(wpath, "wb") as f:
                f.write(blob)
            with open(spath, "w") as f:
                f.write(_incbin(wpath))
            extra.append(spath)
        lib = os.path.join(out_dir, "lib%s.so" % name)
        cmd = [cc, "-shared", "-fPIC", "-O2", "-std=gnu11", "-I", out_dir, "-o", lib, files["c"], files["o"],
               *extra, "-Wl,--version-script=" + files["map"], "-Wl,-z,defs", "-Wl,--as-needed",
               "-lm", "-lpthread"]
        log.debug("linking: %s", " ".join(cmd))
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise MXNetError("the C compiler failed (%s): %s" % (" ".join(cmd), result.stderr.strip()))
        written.append(lib)
    path = os.path.join(out_dir, name + ".weights")
    if embed:
        if os.path.exists(path):  # load_compiled would prefer it to the embedded weights
            log.info("removing %s of an earlier build: the weights are embedded now", path)
            os.unlink(path)
    else:
        with open(path, "wb") as f:
            f.write(blob)
        written.append(path)
    return written
