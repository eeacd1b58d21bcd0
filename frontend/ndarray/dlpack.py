"""DLPack exchange without copies: MXNet's ``to_dlpack_for_read/_write`` and ``from_dlpack``.

Export of a CPU array hands out numpy's own DLPack capsule of the buffer (after
waiting for the engine); a GPU array's capsule is built here (``kDLCUDA``, the
device pointer; the device is synchronised first, so a consumer on any stream sees
the finished values). Import reads the producer's ``DLManagedTensor`` with ctypes,
because numpy's ``from_dlpack`` gives read-only arrays and kiln's kernels write
through every buffer they are given: CPU memory becomes a numpy view, CUDA memory a
``DeviceArray`` on that GPU; the producer's deleter runs when the last array viewing
the memory is gone. Every field is checked before the memory is touched.
"""
from __future__ import annotations

import ctypes

import numpy as np

from ..base import MXNetError

_CPU, _CUDA = 1, 2
_CODES = {0: "int", 1: "uint", 2: "float", 6: "bool"}
_KINDS = {"i": 0, "u": 1, "f": 2, "b": 6}


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
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
# the capsule destructor gets the dying capsule: take it as a raw pointer (a py_object would revive it)
_raw_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_IsValid", _api))
_raw_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_GetPointer", _api))
_exported = {}  # address of an exported DLManagedTensor -> (struct, shape array, DeviceArray) kept alive


@_DELETER
def _release_export(managed):
    """The consumer is done with an exported GPU tensor."""
    _exported.pop(ctypes.addressof(managed.contents), None)


@ctypes.PYFUNCTYPE(None, ctypes.c_void_p)
def _capsule_gone(capsule):
    """A capsule nobody consumed: the tensor is still ours to release."""
    if _raw_is_valid(capsule, b"dltensor"):
        _exported.pop(_raw_get_pointer(capsule, b"dltensor"), None)


class _Owner:
    """Keeps the producer's tensor alive; calls its deleter when the arrays are gone."""

    def __init__(self, managed):
        self.managed = managed

    def __del__(self):
        if self.managed.contents.deleter:
            self.managed.contents.deleter(self.managed)


def export(array, for_write):
    """A "dltensor" capsule of ``array``'s buffer, once queued work allows the access."""
    if for_write:
        array._wait_write()
    else:
        array.wait_to_read()
    data = array._data
    if isinstance(data, np.ndarray):
        return data.__dlpack__()
    data.device.synchronize()
    return _device_capsule(data, array.context.device_id)


def _device_capsule(data, device_id):
    managed = _Managed()
    shape = (ctypes.c_int64 * max(len(data.shape), 1))(*data.shape)
    t = managed.dl_tensor
    t.data, t.device, t.ndim = data.ptr, _Device(_CUDA, device_id), len(data.shape)
    t.dtype = _DType(_KINDS[data.dtype.kind], data.dtype.itemsize * 8, 1)
    t.shape, t.byte_offset = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64)), 0
    managed.deleter = _release_export
    address = ctypes.addressof(managed)
    _exported[address] = (managed, shape, data)
    return _api.PyCapsule_New(address, b"dltensor", ctypes.cast(_capsule_gone, ctypes.c_void_p))


def import_capsule(capsule):
    """(storage, GPU ordinal or None) viewing a "dltensor" capsule's memory: a writeable numpy
    array for CPU memory, a DeviceArray for CUDA memory (the capsule is consumed)."""
    if not _api.PyCapsule_IsValid(capsule, b"dltensor"):
        raise MXNetError("from_dlpack: expected an unused DLPack capsule named 'dltensor' "
                         "(a capsule can be imported once)")
    managed = ctypes.cast(_api.PyCapsule_GetPointer(capsule, b"dltensor"), ctypes.POINTER(_Managed))
    t = managed.contents.dl_tensor
    if t.device.device_type not in (_CPU, _CUDA):
        raise MXNetError("from_dlpack: device type %d is neither the CPU (1) nor CUDA (2)" % t.device.device_type)
    if t.dtype.lanes != 1 or t.dtype.code not in _CODES or t.dtype.bits not in (8, 16, 32, 64):
        raise MXNetError("from_dlpack: unsupported element type (code %d, bits %d, lanes %d)"
                         % (t.dtype.code, t.dtype.bits, t.dtype.lanes))
    if not 0 <= t.ndim <= 32:
        raise MXNetError("from_dlpack: invalid number of dimensions %d" % t.ndim)
    dtype = np.dtype("bool" if _CODES[t.dtype.code] == "bool" else "%s%d" % (_CODES[t.dtype.code], t.dtype.bits))
    if dtype.itemsize * 8 != t.dtype.bits:
        raise MXNetError("from_dlpack: %d-bit %s elements" % (t.dtype.bits, _CODES[t.dtype.code]))
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
    if t.device.device_type == _CUDA:
        from ..runtime import cuda
        from ..runtime.cuda_program import DeviceArray
        device = cuda.device(t.device.device_id)  # MXNetError when this process has no such GPU
        _api.PyCapsule_SetName(capsule, b"used_dltensor")
        return DeviceArray(device, t.data + t.byte_offset, shape, dtype, _Owner(managed)), t.device.device_id
    _api.PyCapsule_SetName(capsule, b"used_dltensor")  # ours now: the producer must not free it
    owner = _Owner(managed)
    if count == 0:
        return np.empty(shape, dtype=dtype), None
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(t.data + t.byte_offset)
    raw._kiln_owner = owner
    return np.frombuffer(raw, dtype=dtype).reshape(shape), None
