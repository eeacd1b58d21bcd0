"""``mx.recordio``: MXNet's RecordIO container (``.rec``), its ``.idx`` index and image-record headers.

Byte format (dmlc RecordIO, little-endian), written and read here in pure Python:
every record is one or more parts, each ``u32 magic 0xced7230a | u32 lrec | payload``
with ``lrec = cflag << 29 | length`` and the payload zero-padded to a multiple of 4.
cflag 0 is a whole record; a payload that contains the magic word at a 4-byte aligned
offset is split there (the magic itself is dropped) into parts with cflag 1 (first),
2 (middle) and 3 (last), and the reader puts the magic back between the parts. The
``.idx`` file has one ``key\\tbyte offset`` line per record.
"""
from __future__ import annotations

import numbers
import os
import struct
from collections import namedtuple

import numpy as np

from .base import MXNetError
from .image import decode_np, encode_np

__all__ = ["MXRecordIO", "MXIndexedRecordIO", "IRHeader", "pack", "unpack", "pack_img", "unpack_img"]

_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", _MAGIC)
_LEN_MASK = (1 << 29) - 1


def _lrec(cflag, length):
    return struct.pack("<II", _MAGIC, (cflag << 29) | length)


def _encode(buf):
    """The bytes dmlc's RecordIOWriter emits for one record."""
    n = len(buf)
    if n >= 1 << 29:
        raise MXNetError("RecordIO: a record holds at most 2**29 - 1 bytes, got %d" % n)
    parts = []
    start = 0
    pos = buf.find(_MAGIC_BYTES)
    while pos != -1:
        if pos % 4 == 0 and pos + 4 <= n - n % 4:
            parts.append(_lrec(1 if start == 0 else 2, pos - start))
            parts.append(buf[start:pos])
            start = pos + 4
            pos = buf.find(_MAGIC_BYTES, start)
        else:
            pos = buf.find(_MAGIC_BYTES, pos + 1)
    parts.append(_lrec(3 if start else 0, n - start))
    parts.append(buf[start:])
    parts.append(b"\0" * (-n % 4))
    return b"".join(parts)


class MXRecordIO:
    """Sequential reader ('r') or writer ('w') of a RecordIO file; ``read()`` gives None at the end."""

    def __init__(self, uri, flag):
        self.uri = str(uri)
        self.flag = flag
        self.pid = None
        self.is_open = False
        self._file = None
        self.open()

    def open(self):
        if self.flag == "w":
            self._file = open(self.uri, "wb")
            self.writable = True
        elif self.flag == "r":
            try:
                self._file = open(self.uri, "rb")
            except FileNotFoundError:
                raise MXNetError("RecordIO file %s does not exist" % self.uri) from None
            self.writable = False
        else:
            raise ValueError("Invalid flag %s" % self.flag)
        self.pid = os.getpid()
        self.is_open = True

    def __del__(self):
        self.close()

    def __getstate__(self):
        """Pickled as path, flag and open/closed (a DataLoader worker reopens the file itself)."""
        d = dict(self.__dict__)
        d["_file"] = None
        return d

    def __setstate__(self, d):
        self.__dict__ = d
        is_open = d["is_open"]
        self.is_open = False
        if is_open:
            self.open()

    def _check_pid(self, allow_reset=False):
        if self.pid != os.getpid():
            if allow_reset:
                self.reset()
            else:
                raise RuntimeError("Forbidden operation in multiple processes")

    def close(self):
        if not getattr(self, "is_open", False):
            return
        self._file.close()
        self._file = None
        self.is_open = False
        self.pid = None

    def reset(self):
        """Back to the first record ('r'); truncates the file ('w')."""
        self.close()
        self.open()

    def _require_open(self):
        if not self.is_open:
            raise MXNetError("RecordIO file %s is closed" % self.uri)

    def write(self, buf):
        """Append one record (bytes)."""
        self._require_open()
        if not self.writable:
            raise MXNetError("RecordIO file %s is opened for reading ('r'); cannot write" % self.uri)
        self._check_pid(allow_reset=False)
        self._file.write(_encode(bytes(buf)))

    def read(self):
        """The next record's bytes, or None at the end of the file."""
        self._require_open()
        if self.writable:
            raise MXNetError("RecordIO file %s is opened for writing ('w'); cannot read" % self.uri)
        self._check_pid(allow_reset=False)
        parts = []
        while True:
            offset = self._file.tell()
            head = self._file.read(8)
            if not head and not parts:
                return None
            if len(head) != 8:
                raise MXNetError("Invalid RecordIO File %s: truncated record header at byte %d" % (self.uri, offset))
            magic, lrec = struct.unpack("<II", head)
            if magic != _MAGIC:
                raise MXNetError("Invalid RecordIO File %s: bad magic 0x%08x at byte %d" % (self.uri, magic, offset))
            cflag, length = lrec >> 29, lrec & _LEN_MASK
            padded = (length + 3) & ~3
            data = self._file.read(padded)
            if len(data) != padded:
                raise MXNetError("Invalid RecordIO File %s: record at byte %d needs %d bytes, file has %d"
                                 % (self.uri, offset, padded, len(data)))
            parts.append(data[:length])
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)

    def _seek(self, pos):
        self._file.seek(pos)

    def _tell(self):
        return self._file.tell()


class MXIndexedRecordIO(MXRecordIO):
    """RecordIO with random access through an index file of ``key\\toffset`` lines.

    ``key_type`` converts the keys read from the index (int by default).
    """

    def __init__(self, idx_path, uri, flag, key_type=int):
        self.idx_path = str(idx_path)
        self.idx = {}
        self.keys = []
        self.key_type = key_type
        self.fidx = None
        super().__init__(uri, flag)

    def open(self):
        super().open()
        self.idx = {}
        self.keys = []
        if self.writable:
            self.fidx = open(self.idx_path, "w")
            return
        try:
            self.fidx = open(self.idx_path, "r")
        except FileNotFoundError:
            super().close()
            raise MXNetError("RecordIO index file %s (for %s) does not exist" % (self.idx_path, self.uri)) from None
        for lineno, line in enumerate(iter(self.fidx.readline, ""), 1):
            fields = line.strip().split("\t")
            if fields == [""]:
                continue
            try:
                key, pos = self.key_type(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                self.close()
                raise MXNetError("RecordIO index file %s, line %d: expected 'key<TAB>offset', got %r"
                                 % (self.idx_path, lineno, line)) from None
            self.idx[key] = pos
            self.keys.append(key)

    def close(self):
        if not getattr(self, "is_open", False):
            return
        super().close()
        if self.fidx is not None:
            self.fidx.close()
            self.fidx = None

    def __getstate__(self):
        d = super().__getstate__()
        d["fidx"] = None
        return d

    def seek(self, idx):
        """Move the reader to the record with key ``idx``."""
        self._require_open()
        if self.writable:
            raise MXNetError("RecordIO file %s is opened for writing ('w'); cannot seek" % self.uri)
        self._check_pid(allow_reset=True)
        try:
            pos = self.idx[idx]
        except KeyError:
            raise KeyError("key %r is not in RecordIO index %s" % (idx, self.idx_path)) from None
        self._seek(pos)

    def tell(self):
        """Byte offset where the next record will be written."""
        self._require_open()
        if not self.writable:
            raise MXNetError("RecordIO file %s is opened for reading ('r'); tell() is for writers" % self.uri)
        return self._tell()

    def read_idx(self, idx):
        """The record with key ``idx``."""
        self.seek(idx)
        return self.read()

    def write_idx(self, idx, buf):
        """Append a record under key ``idx`` and note its offset in the index."""
        key = self.key_type(idx)
        pos = self.tell()
        self.write(buf)
        self.fidx.write("%s\t%d\n" % (str(key), pos))
        self.idx[key] = pos
        self.keys.append(key)


IRHeader = namedtuple("HEADER", ["flag", "label", "id", "id2"])
IRHeader.__doc__ = """Image-record header: flag (number of float labels, 0 for one scalar label), label, id, id2."""
_IR_FORMAT = "IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)


def pack(header, s):
    """Header plus payload as one record: a scalar label goes in the header; an array label
    is stored as float32s after it, with ``flag`` = its size."""
    header = IRHeader(*header)
    if isinstance(header.label, numbers.Number):
        header = header._replace(flag=0)
    else:
        label = np.asarray(header.label, dtype=np.float32)
        header = header._replace(flag=label.size, label=0)
        s = label.tobytes() + s
    return struct.pack(_IR_FORMAT, *header) + s


def unpack(s):
    """``(IRHeader, payload)`` of a record made by ``pack``; an array label comes back as float32 numpy."""
    if len(s) < _IR_SIZE:
        raise MXNetError("record of %d bytes is shorter than the %d-byte IRHeader" % (len(s), _IR_SIZE))
    header = IRHeader(*struct.unpack(_IR_FORMAT, s[:_IR_SIZE]))
    s = s[_IR_SIZE:]
    if header.flag > 0:
        if len(s) < header.flag * 4:
            raise MXNetError("record header announces %d float labels, but only %d bytes follow"
                             % (header.flag, len(s)))
        header = header._replace(label=np.frombuffer(s, np.float32, header.flag))
        s = s[header.flag * 4:]
    return header, s


def unpack_img(s, iscolor=-1):
    """``(IRHeader, image)``: the payload decoded into an HWC uint8 numpy array in BGR order,
    as MXNet's (OpenCV's) ``unpack_img``; ``iscolor`` -1 keeps the file's channels."""
    header, payload = unpack(s)
    return header, decode_np(payload, iscolor, to_rgb=False, what="record image")


def pack_img(header, img, quality=95, img_fmt=".jpg"):
    """A record of ``header`` and ``img`` (HWC uint8 numpy, BGR order as in MXNet) encoded as
    JPEG (``quality`` 0-100) or PNG (``quality`` = compression level 0-9)."""
    return pack(header, encode_np(img, quality, img_fmt))
