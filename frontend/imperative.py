"""Run one registry operator on arrays now: a cached single-node program per
(operator, attributes, input shapes and dtypes)."""
from __future__ import annotations

import threading

import numpy as np

from .compiler.graph import Entry, Node
from .compiler.ops import registry
from .compiler.pipeline import compile_program
from .runtime.program import LoadedProgram

_cache = {}
_lock = threading.Lock()


def _program(op, attrs, in_specs, all_outputs=False):
    key = (op.name, tuple(sorted(attrs.items())), in_specs, all_outputs)
    with _lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    names = ["in%d" % i for i in range(len(in_specs))]
    variables = [Node(None, n) for n in names]
    node = Node(op, op.hint, attrs, [Entry(v) for v in variables])
    count = node.num_outputs if all_outputs else node.num_visible_outputs
    heads = [Entry(node, i) for i in range(count)]
    spec, info = compile_program(heads, dict(zip(names, [s for s, _ in in_specs])),
                                 dict(zip(names, [t for _, t in in_specs])), name="imperative_" + op.name)
    loaded = LoadedProgram(spec)
    names = [n for n in names if loaded.has_slot(n)]  # an input only its shape matters to has no slot
    prog = (loaded, names, info)
    with _lock:
        _cache[key] = prog
    return prog


def output_specs(opname, in_specs, attrs, all_outputs=False):
    """(shapes, dtypes) of the outputs, compiling the program now so that bad input
    raises in the caller's thread, before anything is queued."""
    op = registry.get(opname)
    _, _, info = _program(op, op.format_attrs(attrs, op.hint), tuple(in_specs), all_outputs)
    return info["out_shapes"], info["out_dtypes"]


def invoke_numpy(opname, arrays, attrs, outs=None, all_outputs=False):
    """Apply ``opname`` to numpy arrays; returns numpy arrays (``outs`` written in place).
    ``all_outputs`` also returns hidden outputs (what autograd keeps for backward)."""
    op = registry.get(opname)
    attrs = op.format_attrs(attrs, op.hint)
    arrays = [np.require(a, requirements="C") for a in arrays]  # keeps 0-d arrays 0-d
    in_specs = tuple((tuple(a.shape), a.dtype.name) for a in arrays)
    prog, names, info = _program(op, attrs, in_specs, all_outputs)
    if outs is None:
        outs = [np.empty(s, dtype=t) for s, t in zip(info["out_shapes"], info["out_dtypes"])]
    elif any(np.may_share_memory(o, a) for o in outs for a in arrays):
        # kernels assume outputs do not overlap inputs (x += y, transpose(x, out=x))
        results = invoke_numpy(opname, arrays, attrs, None, all_outputs)
        for o, r in zip(outs, results):
            o[...] = r
        return outs
    with _lock:
        for n, a in zip(names, arrays):
            prog.bind(n, a)
        for n, o in zip(info["outputs"], outs):
            prog.bind(n, o)
        prog.run("forward")
    return outs
