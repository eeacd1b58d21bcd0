"""MXNet 1.x ``.params`` files: byte compatibility, round trips and corrupt input.

The hex strings were written by MXNet 1.9.1 ``mx.nd.save`` (the calls are in the
comments), so these tests check byte compatibility without MXNet installed.
"""
import struct

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError

# mx.nd.save(f, {'arg:fc1_weight': nd.array(np.arange(6).reshape(2, 3)),
#                'aux:moving_é漢': nd.array([1, -2], dtype='int64')})
MX_DICT = bytes.fromhex(
    "120100000000000000000000000000000200000000000000c9fa93f900000000020000000200000000000000"
    "0300000000000000010000000000000000000000000000000000803f0000004000004040000080400000a040"
    "c9fa93f9000000000100000002000000000000000100000000000000060000000100000000000000feffffff"
    "ffffffff02000000000000000e000000000000006172673a6663315f77656967687410000000000000006175"
    "783a6d6f76696e675fc3a9e6bca2")
# mx.nd.save(f, [float16 [0.5, -2], uint8 [0, 255], int8 [-128, 127], float64 [1.25], int32 [7, -7]])
MX_LIST = bytes.fromhex(
    "120100000000000000000000000000000500000000000000c9fa93f900000000010000000200000000000000"
    "010000000000000002000000003800c0c9fa93f90000000001000000020000000000000001000000000000"
    "000300000000ffc9fa93f900000000010000000200000000000000010000000000000005000000807fc9fa93"
    "f900000000010000000100000000000000010000000000000001000000000000000000f43fc9fa93f9000000"
    "0001000000020000000000000001000000000000000400000007000000f9ffffff0000000000000000")
# mx.nd.save(f, nd.array([3.5]))
MX_SINGLE = bytes.fromhex(
    "120100000000000000000000000000000100000000000000c9fa93f900000000010000000100000000000000"
    "010000000000000000000000000060400000000000000000")
# mx.nd.save(f, []) and mx.nd.save(f, {}) both write this.
MX_EMPTY = bytes.fromhex("1201000000000000000000000000000000000000000000000000000000000000")
# mx.nd.save(f, [nd.array(np.zeros((2, 0, 3)), dtype='int32')])
MX_ZERO = bytes.fromhex(
    "120100000000000000000000000000000100000000000000c9fa93f900000000030000000200000000000000"
    "000000000000000003000000000000000100000000000000040000000000000000000000")
# Hand-built V1 (float32 2x3, saved on gpu(3)), v0 (int32 3x2) and V2 gpu(3) float64
# records; MXNet 1.9.1 loads them as the values checked below.
LEGACY = bytes.fromhex(
    "120100000000000000000000000000000300000000000000c8fa93f902000000020000000000000003000000"
    "00000000020000000300000000000000000000000000803f0000004000004040000080400000a04002000000"
    "0300000002000000010000000000000004000000000000000100000002000000030000000400000005000000"
    "c9fa93f900000000010000000200000000000000020000000300000001000000000000000000f83f00000000"
    "000004400000000000000000")
# with mx.util.np_shape(True): mx.nd.save(f, {'s': <float32 scalar 2.5, shape ()>,
#                                            'v': nd.array([1, 2], dtype='int64')})
MX_V3 = bytes.fromhex(
    "120100000000000000000000000000000200000000000000cafa93f9000000000000000001000000000000"
    "000000000000002040cafa93f900000000010000000200000000000000010000000000000006000000010000"
    "000000000002000000000000000200000000000000010000000000000073010000000000000076")

DTYPES = ["float32", "float64", "float16", "int32", "int64", "uint8", "int8", "bool",
          "int16", "uint16", "uint32", "uint64"]


def _saved_bytes(tmp_path, data):
    fname = str(tmp_path / "x.params")
    mx.nd.save(fname, data)
    with open(fname, "rb") as f:
        return f.read()


def _values(loaded):
    items = sorted(loaded.items()) if isinstance(loaded, dict) else enumerate(loaded)
    return [(k, v.shape, np.dtype(v.dtype), v.asnumpy().tolist()) for k, v in items]


def test_recorded_dict_loads_and_rewrites_identically(tmp_path):
    d = mx.nd.load_frombuffer(MX_DICT)
    assert list(d) == ["arg:fc1_weight", "aux:moving_é漢"]
    w, m = d["arg:fc1_weight"], d["aux:moving_é漢"]
    assert w.shape == (2, 3) and w.dtype == np.float32 and w.context == mx.cpu()
    assert w.asnumpy().tolist() == [[0, 1, 2], [3, 4, 5]]
    assert m.dtype == np.int64 and m.asnumpy().tolist() == [1, -2]
    assert _saved_bytes(tmp_path, d) == MX_DICT


def test_recorded_list_every_dtype_rewrites_identically(tmp_path):
    arrs = mx.nd.load_frombuffer(MX_LIST)
    assert isinstance(arrs, list)
    assert [(np.dtype(a.dtype).name, a.asnumpy().tolist()) for a in arrs] == [
        ("float16", [0.5, -2.0]), ("uint8", [0, 255]), ("int8", [-128, 127]),
        ("float64", [1.25]), ("int32", [7, -7])]
    assert _saved_bytes(tmp_path, arrs) == MX_LIST


def test_kiln_writes_mxnet_bytes(tmp_path):
    assert _saved_bytes(tmp_path, mx.nd.array([3.5])) == MX_SINGLE
    assert _saved_bytes(tmp_path, []) == MX_EMPTY
    assert _saved_bytes(tmp_path, {}) == MX_EMPTY
    assert _saved_bytes(tmp_path, [mx.nd.zeros((2, 0, 3), dtype="int32")]) == MX_ZERO
    built = {"arg:fc1_weight": mx.nd.array(np.arange(6).reshape(2, 3)),
             "aux:moving_é漢": mx.nd.array([1, -2], dtype="int64")}
    assert _saved_bytes(tmp_path, built) == MX_DICT


def test_empty_and_zero_size():
    assert mx.nd.load_frombuffer(MX_EMPTY) == []
    (z,) = mx.nd.load_frombuffer(MX_ZERO)
    assert z.shape == (2, 0, 3) and z.dtype == np.int32


def test_legacy_records_load_on_cpu():
    a, b, c = mx.nd.load_frombuffer(LEGACY)
    assert a.shape == (2, 3) and a.dtype == np.float32 and a.asnumpy().ravel().tolist() == list(range(6))
    assert b.shape == (3, 2) and b.dtype == np.int32 and b.asnumpy().ravel().tolist() == list(range(6))
    assert c.dtype == np.float64 and c.asnumpy().tolist() == [1.5, 2.5]
    assert all(x.context == mx.cpu() for x in (a, b, c))


def test_v3_numpy_shape_records():
    d = mx.nd.load_frombuffer(MX_V3)
    assert d["s"].shape == () and d["s"].asnumpy().tolist() == 2.5
    assert d["v"].dtype == np.int64 and d["v"].asnumpy().tolist() == [1, 2]


def test_none_records_load_as_empty_arrays():
    none_v2 = struct.pack("<Iii", 0xF993FAC9, 0, 0)
    none_v3 = struct.pack("<Iii", 0xF993FACA, 0, -1)
    none_v0 = struct.pack("<I", 0)
    buf = struct.pack("<QQQ", 0x112, 0, 3) + none_v2 + none_v3 + none_v0 + struct.pack("<Q", 0)
    assert [a.shape for a in mx.nd.load_frombuffer(buf)] == [(0,)] * 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype(tmp_path, dtype):
    src = (np.arange(12).reshape(3, 4) - 5).astype(dtype)
    fname = str(tmp_path / "x.params")
    mx.nd.save(fname, {"a": mx.nd.array(src, dtype=dtype)})
    out = mx.nd.load(fname)["a"]
    assert np.dtype(out.dtype) == np.dtype(dtype)
    np.testing.assert_array_equal(out.asnumpy(), src)


def test_round_trip_list_dict_single(tmp_path):
    fname = str(tmp_path / "x.params")
    arrs = [mx.nd.array(np.random.rand(2, 3, 4)), mx.nd.array([1, 2, 3], dtype="int64")]
    mx.nd.save(fname, arrs)
    assert _values(mx.nd.load(fname)) == _values(arrs)
    named = {"0.weight": arrs[0], "名前": arrs[1], "": arrs[1]}
    mx.nd.save(fname, named)
    assert _values(mx.nd.load(fname)) == _values(named)
    mx.nd.save(fname, arrs[0])
    assert _values(mx.nd.load(fname)) == _values([arrs[0]])


def test_context_written_as_mxnet_does(tmp_path):
    raw = _saved_bytes(tmp_path, [mx.nd.array([1.0], ctx=mx.cpu(1))])
    assert struct.unpack_from("<ii", raw, 24 + 4 + 4 + 4 + 8) == (1, 1)
    assert mx.nd.load_frombuffer(raw)[0].context == mx.cpu(0)


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError):
        mx.nd.save(str(tmp_path / "x"), [np.zeros(2)])
    with pytest.raises(TypeError):
        mx.nd.save(str(tmp_path / "x"), {1: mx.nd.zeros(2)})
    with pytest.raises(ValueError):
        mx.nd.save(str(tmp_path / "x"), (mx.nd.zeros(2),))
    with pytest.raises(TypeError):
        mx.nd.save(1, [])
    with pytest.raises(TypeError):
        mx.nd.load_frombuffer(123)
    with pytest.raises(MXNetError, match="cannot read"):
        mx.nd.load(str(tmp_path / "missing.params"))


@pytest.mark.parametrize("blob", [MX_DICT, MX_LIST, MX_V3, LEGACY, MX_ZERO],
                         ids=["dict", "list", "v3", "legacy", "zero"])
def test_truncated_at_every_byte_raises(blob):
    for n in range(len(blob)):
        with pytest.raises(MXNetError, match="Invalid NDArray file format"):
            mx.nd.load_frombuffer(blob[:n])


def _patch(blob, offset, fmt, value):
    out = bytearray(blob)
    struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


REC = 24  # first record offset in MX_SINGLE


@pytest.mark.parametrize("offset,fmt,value,message", [
    (0, "Q", 0x113, "bad header magic"),
    (16, "Q", 2 ** 63, "cannot fit"),
    (16, "Q", 2, "needs"),
    (REC, "I", 0xF993FACB, "needs"),              # read as a huge v0 ndim
    (REC + 4, "i", 7, "unknown storage type"),
    (REC + 8, "i", -2, "negative ndim"),
    (REC + 8, "i", 2 ** 30, "needs"),
    (REC + 12, "q", -3, "negative dimension"),
    (REC + 12, "q", 2 ** 62, "too large"),
    (REC + 12, "q", 2 ** 40, "needs"),
    (REC + 20, "i", 9, "unknown context"),
    (REC + 28, "i", 42, "unknown type flag"),
    (len(MX_SINGLE) - 8, "Q", 2, "2 names for 1 arrays"),
])
def test_corrupted_fields_raise(offset, fmt, value, message):
    with pytest.raises(MXNetError, match=message):
        mx.nd.load_frombuffer(_patch(MX_SINGLE, offset, fmt, value))


def test_oversized_name_and_bad_utf8():
    tail = len(MX_DICT) - (8 + 16)  # last name: u64 length then 16 bytes
    with pytest.raises(MXNetError, match="needs"):
        mx.nd.load_frombuffer(_patch(MX_DICT, tail, "Q", 2 ** 64 - 1))
    bad = MX_DICT[:-1] + b"\xff"
    with pytest.raises(MXNetError, match="UTF-8"):
        mx.nd.load_frombuffer(bad)


def test_sparse_and_bf16_not_implemented():
    for stype, name in ((1, "row_sparse"), (2, "csr")):
        with pytest.raises(NotImplementedError, match=name):
            mx.nd.load_frombuffer(_patch(MX_SINGLE, REC + 4, "i", stype))
    with pytest.raises(NotImplementedError, match="bfloat16"):
        mx.nd.load_frombuffer(_patch(MX_SINGLE, REC + 28, "i", 12))


def _one_record(dims, dtype_flag=0):
    rec = struct.pack("<Iii", 0xF993FAC9, 0, len(dims)) + struct.pack("<%dq" % len(dims), *dims)
    rec += struct.pack("<iii", 1, 0, dtype_flag)
    return struct.pack("<QQQ", 0x112, 0, 1) + rec + struct.pack("<Q", 0)


def test_huge_zero_size_shapes_and_too_many_dims():
    with pytest.raises(MXNetError, match="too large"):
        mx.nd.load_frombuffer(_one_record([0, 2 ** 62, 2 ** 62]))
    with pytest.raises(MXNetError, match="dimensions"):
        mx.nd.load_frombuffer(_one_record([0] * 40))
    (ok,) = mx.nd.load_frombuffer(_one_record([0, 5]))
    assert ok.shape == (0, 5)


def test_rank0_array_is_saved_as_shape_1(tmp_path):
    from kiln.ndarray.ndarray import NDArray
    raw = _saved_bytes(tmp_path, NDArray(np.array(3.5, dtype=np.float32), mx.cpu()))
    assert raw == MX_SINGLE
