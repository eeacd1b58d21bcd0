"""mx.recordio: MXNet's RecordIO byte format, the .idx index, IRHeader pack/unpack, RecordFileDataset."""
import pickle
import struct

import numpy as np
import pytest

import kiln as mx
from kiln import recordio

MAGIC = struct.pack("<I", 0xCED7230A)

# Written by MXNet 1.9.1's MXRecordIO for [b'a', b'hello', MAGIC + b'tail', b'ab' + MAGIC + b'cd']
MXNET_GOLDEN = bytes.fromhex(
    "0a23d7ce01000000610000000a23d7ce0500000068656c6c6f0000000a23d7ce000000200a23d7ce040000607461696c"
    "0a23d7ce0800000061620a23d7ce6364")
GOLDEN_RECORDS = [b"a", b"hello", MAGIC + b"tail", b"ab" + MAGIC + b"cd"]


def _write(path, records):
    w = recordio.MXRecordIO(str(path), "w")
    for r in records:
        w.write(r)
    w.close()


def _read_all(path):
    r = recordio.MXRecordIO(str(path), "r")
    out = []
    while True:
        item = r.read()
        if item is None:
            break
        out.append(item)
    r.close()
    return out


def _part(cflag, payload):
    """One part by the format description: magic, cflag<<29 | length, payload, zero padding to 4 bytes."""
    return MAGIC + struct.pack("<I", cflag << 29 | len(payload)) + payload + b"\0" * (-len(payload) % 4)


def test_matches_mxnet_golden_bytes(tmp_path):
    path = tmp_path / "g.rec"
    _write(path, GOLDEN_RECORDS)
    assert path.read_bytes() == MXNET_GOLDEN
    (tmp_path / "m.rec").write_bytes(MXNET_GOLDEN)
    assert _read_all(tmp_path / "m.rec") == GOLDEN_RECORDS


def test_hand_built_bytes(tmp_path):
    records = [b"", b"abc", b"abcd" + MAGIC + b"efgh" + MAGIC + b"ij", b"x" + MAGIC, MAGIC]
    expected = (_part(0, b"") + _part(0, b"abc")
                # magic at aligned offsets 4 and 12 splits the record into first/middle/last parts
                + _part(1, b"abcd") + _part(2, b"efgh") + _part(3, b"ij")
                # unaligned magic stays inside the payload
                + _part(0, b"x" + MAGIC)
                # a payload that is just the magic: empty first and last parts
                + _part(1, b"") + _part(3, b""))
    path = tmp_path / "h.rec"
    _write(path, records)
    assert path.read_bytes() == expected
    assert _read_all(path) == records


def test_round_trip_random_payloads(tmp_path):
    rng = np.random.RandomState(0)
    records = [rng.bytes(n) for n in (0, 1, 3, 4, 5, 31, 200)]
    records += [MAGIC * 3, b"12" + MAGIC * 2 + b"3", bytes(rng.randint(0, 4, 64).astype(np.uint8) * 0)]
    path = tmp_path / "r.rec"
    _write(path, records)
    assert _read_all(path) == records


def test_reader_reset_modes_and_errors(tmp_path):
    path = tmp_path / "a.rec"
    _write(path, [b"r0", b"r1"])
    r = recordio.MXRecordIO(str(path), "r")
    assert r.read() == b"r0"
    r.reset()
    assert r.read() == b"r0" and r.read() == b"r1" and r.read() is None
    with pytest.raises(mx.MXNetError, match="opened for reading"):
        r.write(b"x")
    r.close()
    with pytest.raises(mx.MXNetError, match="closed"):
        r.read()
    with pytest.raises(ValueError, match="Invalid flag"):
        recordio.MXRecordIO(str(path), "a")
    with pytest.raises(mx.MXNetError, match="does not exist"):
        recordio.MXRecordIO(str(tmp_path / "missing.rec"), "r")
    bad = tmp_path / "bad.rec"
    bad.write_bytes(b"\0" * 8)
    with pytest.raises(mx.MXNetError, match="bad magic"):
        recordio.MXRecordIO(str(bad), "r").read()
    truncated = tmp_path / "t.rec"
    truncated.write_bytes(MXNET_GOLDEN[:-4])
    r = recordio.MXRecordIO(str(truncated), "r")
    assert [r.read() for _ in range(3)] == GOLDEN_RECORDS[:3]
    with pytest.raises(mx.MXNetError, match="needs 8 bytes"):
        r.read()


def test_indexed_recordio(tmp_path):
    idx, rec = str(tmp_path / "d.idx"), str(tmp_path / "d.rec")
    w = recordio.MXIndexedRecordIO(idx, rec, "w")
    assert w.tell() == 0
    for i in range(5):
        w.write_idx(i, b"record_%d" % i)
    assert w.tell() == 80
    w.close()
    assert (tmp_path / "d.idx").read_text() == "".join("%d\t%d\n" % (i, 16 * i) for i in range(5))
    r = recordio.MXIndexedRecordIO(idx, rec, "r")
    assert r.keys == [0, 1, 2, 3, 4]
    assert r.read_idx(3) == b"record_3" and r.read_idx(0) == b"record_0"
    assert r.read() == b"record_1"  # sequential reading continues after the seek
    with pytest.raises(KeyError):
        r.read_idx(9)
    clone = pickle.loads(pickle.dumps(r))  # reopened from its path, as MXNet's __setstate__
    assert clone.read_idx(4) == b"record_4"
    r.close()
    clone.close()
    s = recordio.MXIndexedRecordIO(str(tmp_path / "s.idx"), str(tmp_path / "s.rec"), "w", key_type=str)
    s.write_idx("cat", b"meow")
    s.close()
    assert recordio.MXIndexedRecordIO(str(tmp_path / "s.idx"), str(tmp_path / "s.rec"), "r",
                                      key_type=str).read_idx("cat") == b"meow"
    with pytest.raises(mx.MXNetError, match="index file .*missing.idx"):
        recordio.MXIndexedRecordIO(str(tmp_path / "missing.idx"), rec, "r")
    (tmp_path / "bad.idx").write_text("0\tx\n")
    with pytest.raises(mx.MXNetError, match="line 1"):
        recordio.MXIndexedRecordIO(str(tmp_path / "bad.idx"), rec, "r")


def test_pack_unpack_match_mxnet():
    # hex strings from MXNet 1.9.1's recordio.pack
    scalar = recordio.pack(recordio.IRHeader(0, 3.0, 7, 0), b"xyz")
    assert scalar.hex() == "00000000000040400700000000000000000000000000000078797a"
    vector = recordio.pack(recordio.IRHeader(0, [1.0, 2.5], 7, 9), b"xyz")
    assert vector.hex() == "0200000000000000070000000000000009000000000000000000803f0000204078797a"
    header, payload = recordio.unpack(vector)
    assert header.flag == 2 and header.id == 7 and header.id2 == 9 and payload == b"xyz"
    assert header.label.dtype == np.float32 and header.label.tolist() == [1.0, 2.5]
    header, payload = recordio.unpack(recordio.pack(recordio.IRHeader(5, 3, 7, 9), b"xyz"))
    assert header == recordio.IRHeader(0, 3.0, 7, 9) and payload == b"xyz"
    with pytest.raises(mx.MXNetError, match="shorter"):
        recordio.unpack(b"abc")


def test_record_file_dataset(tmp_path):
    rec = str(tmp_path / "data.rec")
    w = recordio.MXIndexedRecordIO(str(tmp_path / "data.idx"), rec, "w")
    for i in range(4):
        w.write_idx(i, recordio.pack(recordio.IRHeader(0, float(i), i, 0), b"payload%d" % i))
    w.close()
    ds = mx.gluon.data.RecordFileDataset(rec)
    assert len(ds) == 4
    header, payload = recordio.unpack(ds[2])
    assert header.label == 2.0 and payload == b"payload2"
    loader = mx.gluon.data.DataLoader(ds.transform(lambda r: recordio.unpack(r)[0].label), batch_size=2)
    assert [b.asnumpy().tolist() for b in loader] == [[0.0, 1.0], [2.0, 3.0]]
