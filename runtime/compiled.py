"""Libraries built by ``kiln compile``, loaded through their C ABI with ctypes.

``load_compiled(path)`` opens ``lib<name>.so`` (``path`` is the build directory or the
library) and creates one model instance from ``<name>.weights`` beside it, or from the
weights embedded in the library. ``CompiledModel.run(**inputs)`` returns the outputs as
numpy arrays. A model compiled with a run-time batch size (``--shape data=?,...``) has -1
at the batch dimension of ``input_shapes``/``output_shapes`` and runs any batch size. Every argument is checked by the library itself; its errors
(``kiln_last_error()``) are raised as MXNetError. Nothing here compiles anything.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

from .errors import MXNetError

DTYPES = ("float32", "float64", "float16", "uint8", "int32", "int8", "int64", "bool")  # by MXNet code
MAX_NDIM = 8
_P = ctypes.c_void_p
_SIGNATURES = {
    "kiln_model_create": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(_P)]),
    "kiln_model_has_embedded_weights": (ctypes.c_int, []),
    "kiln_model_num_inputs": (ctypes.c_int, [_P]),
    "kiln_model_num_outputs": (ctypes.c_int, [_P]),
    "kiln_model_input_name": (ctypes.c_char_p, [_P, ctypes.c_int]),
    "kiln_model_input_shape": (ctypes.c_int, [_P, ctypes.c_int, _P, _P]),
    "kiln_model_batch_size": (ctypes.c_int64, [_P]),
    "kiln_model_input_dtype": (ctypes.c_int, [_P, ctypes.c_int]),
    "kiln_model_output_dtype": (ctypes.c_int, [_P, ctypes.c_int]),
    "kiln_model_set_input": (ctypes.c_int, [_P, ctypes.c_char_p, _P, _P, ctypes.c_int]),
    "kiln_model_run": (ctypes.c_int, [_P]),
    "kiln_model_output_shape": (ctypes.c_int, [_P, ctypes.c_int, _P, _P]),
    "kiln_model_get_output": (ctypes.c_int, [_P, ctypes.c_int, _P, ctypes.c_size_t]),
    "kiln_last_error": (ctypes.c_char_p, []),
    "kiln_model_free": (None, [_P]),
}


def open_library(path):
    """The ``ctypes.CDLL`` of a kiln library with the ABI's signatures declared."""
    try:
        lib = ctypes.CDLL(os.path.abspath(path))
    except OSError as err:
        raise MXNetError("cannot load compiled model %s: %s" % (path, err)) from None
    for fn, (restype, argtypes) in _SIGNATURES.items():
        try:
            f = getattr(lib, fn)
        except AttributeError:
            raise MXNetError("%s is not a kiln model library (no %s)" % (path, fn)) from None
        f.restype, f.argtypes = restype, argtypes
    return lib


def _find(path):
    """(library, weights file or None) for a build directory or a library path."""
    if os.path.isdir(path):
        libs = sorted(glob.glob(os.path.join(path, "lib*.so")))
        if len(libs) != 1:
            raise MXNetError("%s must hold exactly one lib<name>.so built by kiln compile, found %d"
                             % (path, len(libs)))
        path = libs[0]
    elif not os.path.isfile(path):
        raise MXNetError("no compiled model at %s" % path)
    base = os.path.basename(path)
    name = base[3:-3] if base.startswith("lib") and base.endswith(".so") else os.path.splitext(base)[0]
    weights = os.path.join(os.path.dirname(path), name + ".weights")
    return path, weights if os.path.isfile(weights) else None


class CompiledModel:
    """One instance of a compiled model (its own arena and weights). Instances may run in
    different threads at once; calls on one instance are serialised by the library."""

    def __init__(self, lib_path, weights=None):
        self.lib = open_library(lib_path)
        self.path = lib_path
        if weights is None and not self.lib.kiln_model_has_embedded_weights():
            raise MXNetError("%s has no embedded weights and no weights file was found beside it" % lib_path)
        handle = _P()
        self._check(self.lib.kiln_model_create(os.fsencode(weights) if weights else None, ctypes.byref(handle)))
        self.handle = handle
        n_in = self.lib.kiln_model_num_inputs(handle)
        self.input_names = [self.lib.kiln_model_input_name(handle, i).decode() for i in range(n_in)]
        self.input_shapes = [self._shape(self.lib.kiln_model_input_shape, i) for i in range(n_in)]
        self.input_dtypes = [np.dtype(DTYPES[self.lib.kiln_model_input_dtype(handle, i)]) for i in range(n_in)]
        n_out = self.lib.kiln_model_num_outputs(handle)
        self.output_shapes = [self._shape(self.lib.kiln_model_output_shape, i) for i in range(n_out)]
        self.dynamic_batch = any(d < 0 for s in self.input_shapes for d in s)
        self.output_dtypes = [np.dtype(DTYPES[self.lib.kiln_model_output_dtype(handle, i)]) for i in range(n_out)]

    def _check(self, status):
        if status != 0:
            raise MXNetError(self.lib.kiln_last_error().decode(errors="replace"))

    def _shape(self, fn, i):
        shape, ndim = (ctypes.c_int64 * MAX_NDIM)(), ctypes.c_int()
        self._check(fn(self.handle, i, shape, ctypes.byref(ndim)))
        return tuple(shape[:ndim.value])

    def set_input(self, name, array):
        """Copy ``array`` (numpy, the input's dtype) into input ``name``; the library checks the shape."""
        array = np.ascontiguousarray(array)
        if name in self.input_names:
            want = self.input_dtypes[self.input_names.index(name)]
            if array.dtype != want:
                raise MXNetError("input %r needs dtype %s, got %s" % (name, want, array.dtype))
        shape = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
        self._check(self.lib.kiln_model_set_input(self.handle, name.encode(), array.ctypes.data, shape, array.ndim))

    def run(self, **inputs):
        """Set ``inputs`` (name -> numpy array), run, and return the outputs as new numpy arrays."""
        for name, array in inputs.items():
            self.set_input(name, array)
        self._check(self.lib.kiln_model_run(self.handle))
        outs = []
        for i, dtype in enumerate(self.output_dtypes):
            out = np.empty(self._shape(self.lib.kiln_model_output_shape, i), dtype=dtype)
            self._check(self.lib.kiln_model_get_output(self.handle, i, out.ctypes.data, out.nbytes))
            outs.append(out)
        return outs

    @property
    def batch_size(self):
        """The batch size of the inputs set last (0 before any, for a run-time batch size)."""
        n = self.lib.kiln_model_batch_size(self.handle)
        if n < 0:
            self._check(1)
        return n

    def close(self):
        if self.handle:
            self.lib.kiln_model_free(self.handle)
            self.handle = None

    def __del__(self):
        if getattr(self, "handle", None):
            self.close()


def load_compiled(path, weights=None):
    """A ``CompiledModel`` from a ``kiln compile`` build directory or ``lib<name>.so``;
    ``weights``: a weights file other than ``<name>.weights`` beside the library."""
    lib, found = _find(path)
    return CompiledModel(lib, weights or found)
