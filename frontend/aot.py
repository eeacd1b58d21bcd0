"""``kiln compile``'s front half: a symbol JSON file and an MXNet ``.params`` file -> the
inference program, checked, handed to ``compiler/aot.py`` for the library build.

The symbol file is read as JSON and the params file parsed as data; nothing from
either is executed. Arguments named by ``shapes`` are the model's inputs; every other
argument and auxiliary state must be in the params file with the shape and dtype the
graph infers from the inputs, and the params file may hold nothing else. A ``None``
dimension in an input's shape (``--shape data=?,3,224,224``) is the batch size, chosen at
run time (``compiler/dynamic_batch.py``).
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np

from .base import MXNetError
from .compiler import aot
from .compiler.pipeline import compile_program
from .runtime.threads import num_threads as default_threads

log = logging.getLogger(__name__)


def load_params(path):
    """``.params`` file -> {name: numpy array}, ``arg:``/``aux:`` prefixes stripped."""
    from .ndarray.serialization import load
    data = load(path)
    if not isinstance(data, dict):
        raise MXNetError("%s holds arrays without names; kiln compile needs named weights" % path)
    out = {}
    for key, arr in data.items():
        name = key.split(":", 1)[1] if key.startswith(("arg:", "aux:")) else key
        if name in out:
            raise MXNetError("%s holds %r twice (with and without an arg:/aux: prefix)" % (path, name))
        out[name] = arr.asnumpy()
    return out


def check_weights(sym, shapes, dtypes, params, params_path):
    """Raise unless ``params`` holds exactly the non-input variables of ``sym`` with the
    shapes and dtypes the graph infers from the inputs; returns (var shapes, var dtypes)."""
    args, aux = sym.list_arguments(), sym.list_auxiliary_states()
    variables = args + aux
    unknown = [n for n in shapes if n not in args]
    if unknown:
        raise MXNetError("--shape names %s, not an input of the symbol (arguments: %s)"
                         % (", ".join(unknown), ", ".join(args)))
    unknown = [n for n in dtypes if n not in shapes]
    if unknown:
        raise MXNetError("--dtype names %s, which has no --shape (inputs: %s)"
                         % (", ".join(unknown), ", ".join(shapes) or "none"))
    both = [n for n in shapes if n in params]
    if both:
        raise MXNetError("%s is given by --shape and is also a weight in %s" % (", ".join(both), params_path))
    extra = sorted(n for n in params if n not in variables)
    if extra:
        raise MXNetError("%s holds %s, which the symbol does not use" % (params_path, ", ".join(extra)))
    missing = [n for n in variables if n not in shapes and n not in params]
    if missing:
        raise MXNetError("%s has no weight for %s (an input needs --shape %s=...)"
                         % (params_path, ", ".join(missing), missing[0]))
    # weights do not depend on the batch size: check them at batch 1
    arg_shapes, _, aux_shapes = sym.infer_shape_partial(
        **{n: tuple(1 if d is None else d for d in s) for n, s in shapes.items()})
    in_types = {n: dtypes.get(n, "float32") for n in shapes}
    arg_types, _, aux_types = sym.infer_type_partial(**in_types)
    for n, shape, dtype in zip(variables, arg_shapes + aux_shapes, arg_types + aux_types):
        if n not in params:
            continue
        w = params[n]
        if shape and tuple(shape) != w.shape:
            raise MXNetError("weight %s has shape %s in %s, but the graph needs %s for the given input shapes"
                             % (n, w.shape, params_path, tuple(shape)))
        if dtype is not None and np.dtype(dtype) != w.dtype:
            raise MXNetError("weight %s has dtype %s in %s, but the graph needs %s"
                             % (n, w.dtype, params_path, np.dtype(dtype).name))
    var_shapes = dict(shapes, **{n: params[n].shape for n in params})
    var_types = dict(in_types, **{n: params[n].dtype.name for n in params})
    return var_shapes, var_types


def compile_model(symbol_path, params_path, shapes, out_dir, name, dtypes=None, cpu=None, features=None,
                  opt_level=3, emit="so", embed=False, threads=None):
    """Compile a symbol file and its weights for inference into ``out_dir`` (``aot.build_library``);
    returns the paths written."""
    from . import symbol
    t0 = time.perf_counter()
    sym = symbol.load(symbol_path)
    params = load_params(params_path)
    dtypes = dtypes or {}
    var_shapes, var_types = check_weights(sym, shapes, dtypes, params, params_path)
    threads = default_threads() if threads is None else threads
    if threads < 1:
        raise MXNetError("--threads must be at least 1, got %d" % threads)
    table = None
    if any(d is None for s in shapes.values() for d in s):
        from .compiler.dynamic_batch import compile_dynamic_batch
        spec, info, table = compile_dynamic_batch(sym._outputs, var_shapes, var_types, name=name,
                                                  num_threads=threads)
    else:
        spec, info = compile_program(sym._outputs, var_shapes, var_types, None, name=name, is_train=False,
                                     num_threads=threads)
    used = {s.name for s in spec.slots if s.external}
    dropped = [n for n in params if n not in used]
    if dropped:
        log.info("weights the compiled program does not read are left out: %s", ", ".join(dropped))
    inputs = [(n, tuple("$0" if d is None else d for d in shapes[n]), var_types[n]) for n in shapes]
    weights = [(n, np.ascontiguousarray(params[n])) for n in sym.list_arguments() + sym.list_auxiliary_states()
               if n in params and n in used]
    paths = aot.build_library(spec, info, inputs, weights, out_dir, name, cpu=cpu, features=features,
                              opt_level=opt_level, emit=emit, embed=embed, threads=threads, table=table)
    log.info("compiled %s into %s in %.2f s", symbol_path, os.path.abspath(out_dir), time.perf_counter() - t0)
    return paths
