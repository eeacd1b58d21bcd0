"""DLPack exchange without copies: MXNet's ``to_dlpack_for_read/_write`` and ``from_dlpack``.

Export hands out numpy's own DLPack capsule of the buffer (after waiting for
the engine). Import reads the producer's ``DLManagedTensor`` with ctypes,
because numpy's ``from_dlpack`` gives read-only arrays and kiln's kernels
write through every buffer they are given; the producer's deleter runs when
the last array viewing the memory is gone. Every field is checked before
the memory is touched.
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..base import MXNetError

_CPU = 1
_CODES = {0: "int", 1: "uint", 2: "float"}


class _Device(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _Device), ("ndim", ctypes.c_int32), ("dtype", _DType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class _Managed(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(_Managed))
_Managed._fields_ = [("dl_tensor", _Tensor), ("manager_ctx", ctypes.c_void_p), ("deleter", _DELETER)]

_api = ctypes.pythonapi
_api.PyCapsule_IsValid.restype = ctypes.c_int
_api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_api.PyCapsule_SetName.restype = ctypes.c_int
_api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]


class _Owner:
    """Keeps the producer's tensor alive; calls its deleter when the arrays are gone."""

    def __init__(self, managed):
        self.managed = managed

    def __del__(self):
        if self.managed.contents.deleter:
            self.managed.contents.deleter(self.managed)


def export(array, for_write):
    """A "dltensor" capsule of ``array``'s buffer, once queued work allows the access."""
    if array.context.device_type == "gpu":
        raise NotImplementedError("DLPack export of an array on %s: only CPU arrays are exported so far; "
                                  "copy it with as_in_context(mx.cpu()) first" % (array.context,))
    if for_write:
        array._wait_write()
    else:
        array.wait_to_read()
    return array._data.__dlpack__()


def import_capsule(capsule):
    """A writeable numpy view of a "dltensor" capsule's memory (the capsule is consumed)."""
    if not _api.PyCapsule_IsValid(capsule, b"dltensor"):
        raise MXNetError("from_dlpack: expected an unused DLPack capsule named 'dltensor' "
                         "(a capsule can be imported once)")
    managed = ctypes.cast(_api.PyCapsule_GetPointer(capsule, b"dltensor"), ctypes.POINTER(_Managed))
    t = managed.contents.dl_tensor
    if t.device.device_type != _CPU:
        raise MXNetError("from_dlpack: device type %d is not the CPU; kiln imports CPU memory only"
                         % t.device.device_type)
    if t.dtype.lanes != 1 or t.dtype.code not in _CODES or t.dtype.bits not in (8, 16, 32, 64):
        raise MXNetError("from_dlpack: unsupported element type (code %d, bits %d, lanes %d)"
                         % (t.dtype.code, t.dtype.bits, t.dtype.lanes))
    if not 0 <= t.ndim <= 32:
        raise MXNetError("from_dlpack: invalid number of dimensions %d" % t.ndim)
    dtype = np.dtype("%s%d" % (_CODES[t.dtype.code], t.dtype.bits))
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if any(d < 0 for d in shape):
        raise MXNetError("from_dlpack: negative dimension in shape %s" % (shape,))
    count = int(np.prod(shape, dtype=np.int64))
    if t.strides and count:  # strides of an empty tensor mean nothing
        expected, step = [], 1
        for d in reversed(shape):
            expected.insert(0, step)
            step *= d
        given = [t.strides[i] for i in range(t.ndim)]
        if any(g != e for g, e, d in zip(given, expected, shape) if d > 1):
            raise MXNetError("from_dlpack: strides %s (elements) are not row-major compact for shape %s"
                             % (given, shape))
    if count and not t.data:
        raise MXNetError("from_dlpack: null data pointer for shape %s" % (shape,))
    _api.PyCapsule_SetName(capsule, b"used_dltensor")  # ours now: the producer must not free it
    owner = _Owner(managed)
    if count == 0:
        return np.empty(shape, dtype=dtype)
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(t.data + t.byte_offset)
    raw._kiln_owner = owner
    return np.frombuffer(raw, dtype=dtype).reshape(shape)
