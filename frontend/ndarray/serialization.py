"""MXNet 1.x NDArray list files (``.params``): ``save``, ``load``, ``load_frombuffer``.

The reader is a bounds-checked parser over ``struct``/``numpy.frombuffer``: a file
never executes anything, and every length is checked against the bytes left
before anything is allocated, so a corrupt file raises ``MXNetError`` instead of
crashing or returning part of its contents.
"""
import struct

import numpy as np

from ..base import MXNetError
from ..context import Context, cpu
from .ndarray import NDArray

_LIST_MAGIC = 0x112
_V1_MAGIC = 0xF993FAC8
_V2_MAGIC = 0xF993FAC9
_V3_MAGIC = 0xF993FACA
_SPARSE_STYPES = {1: "row_sparse", 2: "csr"}

# mshadow type flags; 12 (bfloat16) has no numpy dtype.
_FLAG_TO_DTYPE = {
    0: np.float32, 1: np.float64, 2: np.float16, 3: np.uint8, 4: np.int32, 5: np.int8,
    6: np.int64, 7: np.bool_, 8: np.int16, 9: np.uint16, 10: np.uint32, 11: np.uint64,
}
_DTYPE_TO_FLAG = {np.dtype(v): k for k, v in _FLAG_TO_DTYPE.items()}
_BF16_FLAG = 12
_MAX_NDIM = 32
_MAX_BYTES = 2 ** 62


class _Reader:
    """Cursor over the file bytes; every read is checked against what is left."""

    def __init__(self, buf):
        self.buf = memoryview(buf).cast("B")
        self.pos = 0

    def left(self):
        return len(self.buf) - self.pos

    def take(self, n, what):
        if n < 0 or n > self.left():
            raise MXNetError("Invalid NDArray file format: %s needs %d bytes at offset %d, "
                             "only %d left (truncated or corrupted file)" % (what, n, self.pos, self.left()))
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt, what):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def u64(self, what):
        return self.unpack("Q", what)[0]


def _read_tshape(r, allow_unknown):
    """TShape: i32 ndim then ndim x i64; -1 means unknown (numpy-shape files only)."""
    (ndim,) = r.unpack("i", "shape ndim")
    if ndim == -1 and allow_unknown:
        return None
    if ndim < 0:
        raise MXNetError("Invalid NDArray file format: negative ndim %d" % ndim)
    dims = r.unpack("%dq" % ndim, "shape dims")
    if any(d < 0 for d in dims):
        if allow_unknown and all(d >= -1 for d in dims):
            return None
        raise MXNetError("Invalid NDArray file format: negative dimension in shape %s" % (dims,))
    return dims


def _read_context(r):
    dev_type, dev_id = r.unpack("ii", "context")
    if dev_type not in Context.devtype2str or dev_id < 0:
        raise MXNetError("Invalid NDArray file format: unknown context (dev_type %d, dev_id %d)"
                         % (dev_type, dev_id))


def _read_data(r, shape):
    """Context and type flag, then the C-order values, loaded on the CPU whatever was saved."""
    _read_context(r)
    (flag,) = r.unpack("i", "type flag")
    if flag == _BF16_FLAG:
        raise NotImplementedError("loading bfloat16 arrays (type flag 12) is not supported")
    if flag not in _FLAG_TO_DTYPE:
        raise MXNetError("Invalid NDArray file format: unknown type flag %d" % flag)
    dtype = np.dtype(_FLAG_TO_DTYPE[flag])
    if len(shape) > _MAX_NDIM:
        raise MXNetError("Invalid NDArray file format: %d dimensions (at most %d)" % (len(shape), _MAX_NDIM))
    # numpy rejects zero-size shapes whose other dims overflow, so bound those too.
    extent = dtype.itemsize
    for d in shape:
        extent *= max(d, 1)
    if extent > _MAX_BYTES:
        raise MXNetError("Invalid NDArray file format: shape %s is too large" % (tuple(shape),))
    numel = 1
    for d in shape:
        numel *= d
    raw = r.take(numel * dtype.itemsize, "array data of shape %s" % (tuple(shape),))
    if dtype == np.bool_:
        data = np.frombuffer(raw, dtype=np.uint8) != 0
    else:
        data = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype)
    data = data.reshape(shape)
    return NDArray(data, cpu())


def _none_array():
    """What MXNet's Python API shows for a "none" record: an empty float32 array."""
    return NDArray(np.empty((0,), dtype=np.float32), cpu())


def _read_record(r):
    (magic,) = r.unpack("I", "record magic")
    if magic in (_V2_MAGIC, _V3_MAGIC):
        np_shape = magic == _V3_MAGIC
        (stype,) = r.unpack("i", "storage type")
        if stype in _SPARSE_STYPES:
            raise NotImplementedError("loading %s (sparse) arrays is not supported"
                                      % _SPARSE_STYPES[stype])
        if stype != 0:
            raise MXNetError("Invalid NDArray file format: unknown storage type %d" % stype)
        shape = _read_tshape(r, allow_unknown=np_shape)
        if shape is None or (not np_shape and len(shape) == 0):
            return _none_array()
        return _read_data(r, shape)
    if magic == _V1_MAGIC:
        shape = _read_tshape(r, allow_unknown=False)
    else:
        # v0: the first word is ndim, dims are u32.
        shape = struct.unpack("<%dI" % magic, r.take(4 * magic, "legacy shape dims"))
    if len(shape) == 0:
        return _none_array()
    return _read_data(r, shape)


def load_frombuffer(buf):
    """Parse an NDArray list file held in memory; a list if it has no names, else a dict."""
    if not isinstance(buf, (str, bytes, bytearray, memoryview)):
        raise TypeError("buf required to be a string or bytes")
    if isinstance(buf, str):
        buf = buf.encode("latin-1")
    r = _Reader(buf)
    header = r.u64("file header")
    r.u64("reserved header")
    if header != _LIST_MAGIC:
        raise MXNetError("Invalid NDArray file format: bad header magic 0x%x" % header)
    count = r.u64("array count")
    # The smallest record (a v0 none array) is 4 bytes: bounds the count before any work.
    if count > r.left() // 4:
        raise MXNetError("Invalid NDArray file format: %d arrays cannot fit in %d bytes"
                         % (count, r.left()))
    arrays = [_read_record(r) for _ in range(count)]
    nkeys = r.u64("name count")
    if nkeys not in (0, count):
        raise MXNetError("Invalid NDArray file format: %d names for %d arrays" % (nkeys, count))
    names = []
    for _ in range(nkeys):
        length = r.u64("name length")
        raw = bytes(r.take(length, "name"))
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise MXNetError("Invalid NDArray file format: name is not UTF-8: %r" % raw) from None
    if nkeys == 0:
        return arrays
    return dict(zip(names, arrays))


def load(fname):
    """Load an MXNet ``.params`` file; a list if it was saved without names, else a dict."""
    if not isinstance(fname, str):
        raise TypeError("fname required to be a string")
    try:
        with open(fname, "rb") as f:
            blob = f.read()
    except OSError as err:
        # MXNet reports unreadable files as MXNetError, so callers catch one type.
        raise MXNetError("cannot read NDArray file %r: %s" % (fname, err)) from err
    return load_frombuffer(blob)


def _record_bytes(arr):
    """One V2 dense record, with the array's own context as MXNet writes it."""
    data = np.ascontiguousarray(arr._read())
    flag = _DTYPE_TO_FLAG.get(data.dtype)
    if flag is None:
        raise MXNetError("cannot save an array of dtype %s in the MXNet format" % data.dtype)
    ctx = arr.context
    parts = [struct.pack("<Iii", _V2_MAGIC, 0, data.ndim), struct.pack("<%dq" % data.ndim, *data.shape)]
    if data.ndim == 0:
        # MXNet 1.x shapes have no rank 0: a scalar is stored as shape (1,).
        parts[0] = struct.pack("<Iii", _V2_MAGIC, 0, 1)
        parts[1] = struct.pack("<q", 1)
    parts.append(struct.pack("<iii", ctx.device_typeid, ctx.device_id, flag))
    parts.append(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes())
    return b"".join(parts)


def save(fname, data):
    """Write ``data`` (NDArray, list of NDArrays, or dict str -> NDArray) as MXNet 1.x does."""
    if not isinstance(fname, str):
        raise TypeError("fname required to be a string")
    if isinstance(data, NDArray):
        data = [data]
    if isinstance(data, dict):
        if any(not isinstance(k, str) for k in data) or \
                any(not isinstance(v, NDArray) for v in data.values()):
            raise TypeError("save only accept dict str->NDArray or list of NDArray")
        names, arrays = list(data.keys()), list(data.values())
    elif isinstance(data, list):
        if any(not isinstance(v, NDArray) for v in data):
            raise TypeError("save only accept dict str->NDArray or list of NDArray")
        names, arrays = [], data
    else:
        raise ValueError("data needs to either be a NDArray, dict of str, NDArray pairs "
                         "or a list of NDarrays.")
    parts = [struct.pack("<QQQ", _LIST_MAGIC, 0, len(arrays))]
    parts.extend(_record_bytes(a) for a in arrays)
    parts.append(struct.pack("<Q", len(names)))
    for name in names:
        raw = name.encode("utf-8")
        parts.append(struct.pack("<Q", len(raw)) + raw)
    blob = b"".join(parts)
    with open(fname, "wb") as f:
        f.write(blob)
