"""mx.io: NDArrayIter, ResizeIter, PrefetchingIter, CSVIter, MNISTIter, DataDesc, DataBatch.

Every expected batch sequence below was produced by MXNet 1.9.1 on the same inputs (same numpy
seeds, same files) and hard-coded here. Batches are written compactly: the label values of a
batch (label i belongs to data row i) and its ``pad``.
"""
import gzip
import struct

import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError

X = np.arange(30, dtype=np.float32).reshape(10, 3)
Y = np.arange(10, dtype=np.float32)


def epochs(it, n):
    """Label lists and pads of ``n`` epochs (reset between them, as Module.fit does)."""
    out = []
    for _ in range(n):
        ep = []
        for b in it:
            data, lab = b.data[0].asnumpy(), b.label[0].asnumpy()
            np.testing.assert_array_equal(data, X[lab.astype(int)])  # data rows follow their labels
            ep.append((lab.astype(int).tolist(), b.pad))
        out.append(ep)
        it.reset()
    return out


# --------------------------------------------------------------------------- NDArrayIter

GOLDEN = {
    ("pad", 3): [[([0, 1, 2], 0), ([3, 4, 5], 0), ([6, 7, 8], 0), ([9, 0, 1], 2)]] * 3,
    ("pad", 4): [[([0, 1, 2, 3], 0), ([4, 5, 6, 7], 0), ([8, 9, 0, 1], 2)]] * 3,
    ("pad", 25): [[(list(range(10)) * 2 + [0, 1, 2, 3, 4], 15)]] * 3,
    ("discard", 3): [[([0, 1, 2], 0), ([3, 4, 5], 0), ([6, 7, 8], 0)]] * 3,
    ("discard", 4): [[([0, 1, 2, 3], 0), ([4, 5, 6, 7], 0)]] * 3,
    ("discard", 25): [[], [], []],
    ("roll_over", 3): [[([0, 1, 2], 0), ([3, 4, 5], 0), ([6, 7, 8], 0)],
                       [([9, 0, 1], 1), ([2, 3, 4], 0), ([5, 6, 7], 0)],
                       [([8, 9, 0], 2), ([1, 2, 3], 0), ([4, 5, 6], 0), ([7, 8, 9], 0)]],
    ("roll_over", 4): [[([0, 1, 2, 3], 0), ([4, 5, 6, 7], 0)],
                       [([8, 9, 0, 1], 2), ([2, 3, 4, 5], 0), ([6, 7, 8, 9], 0)],
                       [([0, 1, 2, 3], 0), ([4, 5, 6, 7], 0)]],
}


@pytest.mark.parametrize("handle,batch", sorted(GOLDEN))
def test_ndarrayiter_last_batch_handle(handle, batch):
    it = mx.io.NDArrayIter(X, Y, batch_size=batch, last_batch_handle=handle)
    assert epochs(it, 3) == GOLDEN[(handle, batch)]


SHUFFLED = {  # np.random.seed(3) before construction, batch_size 4, two epochs
    "pad": [[([5, 4, 1, 2], 0), ([9, 6, 7, 0], 0), ([3, 8, 5, 4], 2)],
            [([1, 2, 4, 9], 0), ([3, 8, 6, 0], 0), ([5, 7, 1, 2], 2)]],
    "discard": [[([5, 4, 1, 2], 0), ([9, 6, 7, 0], 0)], [([1, 2, 4, 9], 0), ([3, 8, 6, 0], 0)]],
    "roll_over": [[([5, 4, 1, 2], 0), ([9, 6, 7, 0], 0)],
                  [([3, 8, 1, 2], 2), ([4, 9, 3, 8], 0), ([6, 0, 5, 7], 0)]],
}


@pytest.mark.parametrize("handle", sorted(SHUFFLED))
def test_ndarrayiter_shuffle_uses_numpy_global_rng(handle):
    np.random.seed(3)
    it = mx.io.NDArrayIter(X, Y, batch_size=4, shuffle=True, last_batch_handle=handle)
    assert epochs(it, 2) == SHUFFLED[handle]


def test_ndarrayiter_roll_over_batch_larger_than_data():
    it = mx.io.NDArrayIter(X, Y, batch_size=25, last_batch_handle="roll_over")
    assert list(it) == []          # the 10 samples are carried over
    it.reset()
    with pytest.raises(MXNetError, match="batch_size"):
        it.next()                  # MXNet fails here as well


def test_ndarrayiter_dtypes():
    it = mx.io.NDArrayIter(mx.nd.array(X, dtype="int32"), Y, batch_size=4)
    assert it.provide_data[0].dtype is np.int32 and it.next().data[0].dtype is np.int32
    np.random.seed(1)  # shuffling rebuilds the arrays with nd.array: float32, as MXNet
    it = mx.io.NDArrayIter(mx.nd.array(X, dtype="int32"), Y, batch_size=4, shuffle=True)
    assert it.provide_data[0].dtype is np.float32 and it.next().data[0].dtype is np.float32
    it = mx.io.NDArrayIter(X.astype(np.int64), Y.astype(np.float64), batch_size=4)
    assert [d.dtype for d in it.provide_data + it.provide_label] == [np.float32, np.float32]


def test_ndarrayiter_dict_and_list_inputs():
    it = mx.io.NDArrayIter({"b_in": X, "a_in": X * 2}, {"lab": Y}, batch_size=5)
    assert [(d.name, d.shape) for d in it.provide_data] == [("a_in", (5, 3)), ("b_in", (5, 3))]
    assert [(d.name, d.shape, d.layout) for d in it.provide_label] == [("lab", (5,), "NCHW")]
    b = it.next()
    np.testing.assert_array_equal(b.data[0].asnumpy(), X[:5] * 2)
    np.testing.assert_array_equal(b.data[1].asnumpy(), X[:5])
    it = mx.io.NDArrayIter([X + i for i in range(11)], batch_size=5)
    names = [d.name for d in it.provide_data]
    assert names[:4] == ["_0_data", "_10_data", "_1_data", "_2_data"]  # string sort, as MXNet
    it = mx.io.NDArrayIter(X, batch_size=3, data_name="feat", label_name="target")
    assert [d.name for d in it.provide_data] == ["feat"] and it.provide_label == []
    assert it.next().label == []


def test_ndarrayiter_layout_tnc():
    z = np.arange(72, dtype=np.float32).reshape(6, 6, 2)
    it = mx.io.NDArrayIter(z, batch_size=4, layout="TNC", last_batch_handle="discard")
    assert [(d.shape, d.layout) for d in it.provide_data] == [((6, 4, 2), "TNC")]
    b = it.next()
    np.testing.assert_array_equal(b.data[0].asnumpy(), z[:, :4])


def test_ndarrayiter_manual_protocol_and_reset_mid_epoch():
    it = mx.io.NDArrayIter(X, Y, batch_size=4)
    seen = []
    while it.iter_next():
        seen.append((it.getlabel()[0].asnumpy().astype(int).tolist(), it.getpad(), it.getindex()))
    assert seen == [([0, 1, 2, 3], 0, None), ([4, 5, 6, 7], 0, None), ([8, 9, 0, 1], 2, None)]
    it.reset()
    it.next()
    it.reset()                     # mid-epoch: starts over
    assert it.next().label[0].asnumpy().tolist() == [0, 1, 2, 3]
    # roll_over: a mid-epoch reset carries nothing over (MXNet 1.9.1 gives the same)
    it = mx.io.NDArrayIter(X, Y, batch_size=4, last_batch_handle="roll_over")
    it.next(), it.next()
    it.reset()
    assert epochs(it, 2) == GOLDEN[("roll_over", 4)][:2]


def test_ndarrayiter_hard_reset_drops_carried_samples():
    it = mx.io.NDArrayIter(X, Y, batch_size=4, last_batch_handle="roll_over")
    list(it)
    assert it._cache_data is not None
    it.hard_reset()
    assert it._cache_data is None
    assert [b.label[0].asnumpy().astype(int).tolist() for b in it] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_ndarrayiter_batches_are_copies():
    src = mx.nd.array(X)
    b = mx.io.NDArrayIter(src, batch_size=4).next()
    b.data[0][:] = -1
    np.testing.assert_array_equal(src.asnumpy(), X)


def test_ndarrayiter_errors_name_the_argument():
    with pytest.raises(ValueError, match="last_batch_handle"):
        mx.io.NDArrayIter(X, batch_size=2, last_batch_handle="wrap")
    with pytest.raises(ValueError, match="batch_size"):
        mx.io.NDArrayIter(X, batch_size=0)
    with pytest.raises(TypeError, match="data"):
        mx.io.NDArrayIter("not an array")
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(NotImplementedError, match="CSR"):
        mx.io.NDArrayIter(scipy_sparse.csr_matrix(X), batch_size=2, last_batch_handle="discard")


# --------------------------------------------------------------------------- DataDesc / DataBatch

def test_datadesc_and_databatch():
    d = mx.io.DataDesc("data", (2, 3), np.float64, "NC")
    assert (d.name, d.shape, d.dtype, d.layout) == ("data", (2, 3), np.float64, "NC")
    assert d == ("data", (2, 3)) and tuple(d) == ("data", (2, 3))
    assert repr(mx.io.DataDesc("x", (1, 2))) == "DataDesc[x,(1, 2),<class 'numpy.float32'>,NCHW]"
    descs = mx.io.DataDesc.get_list([("a", (1,)), ("b", (2,))], [("a", np.int32), ("b", np.float16)])
    assert [(x.name, x.dtype) for x in descs] == [("a", np.int32), ("b", np.float16)]
    assert mx.io.DataDesc.get_list([("a", (1,))], None)[0].dtype is np.float32
    assert [mx.io.DataDesc.get_batch_axis(x) for x in (None, "TNC", "CHW")] == [0, 1, -1]
    b = mx.io.DataBatch([mx.nd.ones((2, 3))], [mx.nd.zeros((2,))], pad=1, index=np.array([4, 5]))
    assert str(b) == "DataBatch: data shapes: [(2, 3)] label shapes: [(2,)]"
    assert str(mx.io.DataBatch([mx.nd.ones((2, 3))])) == "DataBatch: data shapes: [(2, 3)] label shapes: None"
    assert (b.pad, b.index.tolist(), b.bucket_key, b.provide_data) == (1, [4, 5], None, None)
    with pytest.raises(AssertionError):
        mx.io.DataBatch(mx.nd.ones((2, 3)))


# --------------------------------------------------------------------------- ResizeIter / PrefetchingIter

def test_resizeiter():
    it = mx.io.ResizeIter(mx.io.NDArrayIter(X, Y, batch_size=4), 5)
    assert it.batch_size == 4 and [d.shape for d in it.provide_data] == [(4, 3)]
    ep = [([0, 1, 2, 3], 0), ([4, 5, 6, 7], 0), ([8, 9, 0, 1], 2), ([0, 1, 2, 3], 0), ([4, 5, 6, 7], 0)]
    assert epochs(it, 2) == [ep, ep]
    it = mx.io.ResizeIter(mx.io.NDArrayIter(X, Y, batch_size=4), 2, reset_internal=False)
    assert epochs(it, 3) == [[([0, 1, 2, 3], 0), ([4, 5, 6, 7], 0)], [([8, 9, 0, 1], 2), ([0, 1, 2, 3], 0)],
                             [([4, 5, 6, 7], 0), ([8, 9, 0, 1], 2)]]


def test_prefetchingiter_two_iterators():
    i1 = mx.io.NDArrayIter(X, Y, batch_size=4)
    i2 = mx.io.NDArrayIter(X * 10, Y * 10, batch_size=4)
    p = mx.io.PrefetchingIter([i1, i2], rename_data=[{"data": "d1"}, {"data": "d2"}],
                              rename_label=[{"softmax_label": "l1"}, {"softmax_label": "l2"}])
    assert [(d.name, d.shape) for d in p.provide_data] == [("d1", (4, 3)), ("d2", (4, 3))]
    assert [(d.name, d.shape) for d in p.provide_label] == [("l1", (4,)), ("l2", (4,))]
    assert p.batch_size == 4
    for _ in range(2):
        got = []
        for b in p:
            assert len(b.data) == 2 and len(b.label) == 2
            np.testing.assert_array_equal(b.data[1].asnumpy(), b.data[0].asnumpy() * 10)
            np.testing.assert_array_equal(b.label[1].asnumpy(), b.label[0].asnumpy() * 10)
            assert [d.name for d in b.provide_data] == ["d1", "d2"]
            got.append((b.label[0].asnumpy().astype(int).tolist(), b.pad))
        assert got == GOLDEN[("pad", 4)][0]
        p.reset()
    p.close()
    short = mx.io.PrefetchingIter([mx.io.NDArrayIter(X, batch_size=5), mx.io.NDArrayIter(X[:5], batch_size=5)])
    short.next()
    with pytest.raises(MXNetError, match="mismatch"):
        short.next()
    short.close()


# --------------------------------------------------------------------------- CSVIter

@pytest.fixture
def csvs(tmp_path):
    (tmp_path / "d.csv").write_text("1,2,3\n2,3,4\n3,4,5\n4,5,6\n5,6,7\n")
    (tmp_path / "l.csv").write_text("10\n20\n30\n40\n50\n")
    (tmp_path / "l2.csv").write_text("10,11\n20,21\n30,31\n40,41\n50,51\n")
    return tmp_path


def csv_epochs(it, n):
    out = []
    for _ in range(n):
        out.append([(b.index.tolist(), b.pad, b.data[0].asnumpy()[:, 0].tolist(), b.label[0].asnumpy().tolist())
                    for b in it])
        it.reset()
    return out


def test_csviter_round_batch(csvs):
    it = mx.io.CSVIter(data_csv=str(csvs / "d.csv"), data_shape=(3,), batch_size=3, label_csv=str(csvs / "l.csv"))
    assert [(d.name, d.shape, d.dtype) for d in it.provide_data] == [("data", (3, 3), np.float32)]
    assert [(d.name, d.shape) for d in it.provide_label] == [("softmax_label", (3,))]
    assert csv_epochs(it, 3) == [
        [([0, 1, 2], 0, [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]), ([3, 4, 0], 1, [4.0, 5.0, 1.0], [40.0, 50.0, 10.0])],
        [([1, 2, 3], 0, [2.0, 3.0, 4.0], [20.0, 30.0, 40.0]), ([4, 0, 1], 2, [5.0, 1.0, 2.0], [50.0, 10.0, 20.0])],
        [([2, 3, 4], 0, [3.0, 4.0, 5.0], [30.0, 40.0, 50.0])]]


def test_csviter_no_round_batch(csvs):
    it = mx.io.CSVIter(data_csv=str(csvs / "d.csv"), data_shape=(3,), batch_size=3, label_csv=str(csvs / "l.csv"),
                       round_batch=False)
    ep = [([0, 1, 2], 0, [1.0, 2.0, 3.0], [10.0, 20.0, 30.0]), ([3, 4, 2], 1, [4.0, 5.0, 3.0], [40.0, 50.0, 30.0])]
    assert csv_epochs(it, 2) == [ep, ep]


def test_csviter_shapes_dtypes_and_format(csvs):
    it = mx.io.CSVIter(data_csv=str(csvs / "d.csv"), data_shape=(1, 3), batch_size=2, dtype="int64",
                       label_csv=str(csvs / "l2.csv"), label_shape=(2,))
    b = it.next()
    assert b.data[0].dtype is np.int64 and b.data[0].shape == (2, 1, 3)
    assert b.label[0].asnumpy().tolist() == [[10, 11], [20, 21]] and b.label[0].dtype is np.int64
    it = mx.io.CSVIter(data_csv=str(csvs / "d.csv"), data_shape=(3,), batch_size=2, dtype="int32")
    assert it.provide_data[0].dtype is np.int32 and it.next().label[0].asnumpy().tolist() == [0, 0]
    (csvs / "f.csv").write_text("1.5, 2e1 ,-3\n\n2,3,4\n3,4,5,\n")
    b = mx.io.CSVIter(data_csv=str(csvs / "f.csv"), data_shape=(3,), batch_size=3).next()
    assert b.data[0].asnumpy().tolist() == [[1.5, 20.0, -3.0], [2, 3, 4], [3, 4, 5]]
    (csvs / "dir").mkdir()
    (csvs / "dir" / "a.csv").write_text("1,2\n3,4\n")
    (csvs / "dir" / "b.csv").write_text("5,6\n7,8\n9,10\n")
    it = mx.io.CSVIter(data_csv=str(csvs / "dir"), data_shape=(2,), batch_size=2)  # files in name order
    assert csv_epochs(it, 2) == [[([0, 1], 0, [1.0, 3.0], [0.0, 0.0]), ([2, 3], 0, [5.0, 7.0], [0.0, 0.0]),
                                  ([4, 0], 1, [9.0, 1.0], [0.0, 0.0])],
                                 [([1, 2], 0, [3.0, 5.0], [0.0, 0.0]), ([3, 4], 0, [7.0, 9.0], [0.0, 0.0])]]


def test_csviter_errors(csvs):
    d = str(csvs / "d.csv")
    with pytest.raises(MXNetError, match=r"d\.csv:1.*shape=\(4,\).*row-length=3"):
        mx.io.CSVIter(data_csv=d, data_shape=(4,), batch_size=2)
    with pytest.raises(MXNetError, match="nofile.csv"):
        mx.io.CSVIter(data_csv=str(csvs / "nofile.csv"), data_shape=(3,), batch_size=2)
    with pytest.raises(MXNetError, match="float64"):
        mx.io.CSVIter(data_csv=d, data_shape=(3,), batch_size=2, dtype="float64")
    with pytest.raises(MXNetError, match="batch_size"):
        mx.io.CSVIter(data_csv=d, data_shape=(3,), batch_size=0)
    with pytest.raises(TypeError):
        mx.io.CSVIter(d, (3,), 2)  # keyword arguments only, as MXNet
    (csvs / "bad.csv").write_text("1,2,3\n1,x,3\n")
    with pytest.raises(MXNetError, match=r"bad\.csv:2"):
        mx.io.CSVIter(data_csv=str(csvs / "bad.csv"), data_shape=(3,), batch_size=2)


def test_csviter_batch_larger_than_data(csvs):
    d = str(csvs / "d.csv")
    it = mx.io.CSVIter(data_csv=d, data_shape=(3,), batch_size=8)
    b = it.next()  # MXNet: the first pass wraps around once, pad 3
    assert (b.index.tolist(), b.pad) == ([0, 1, 2, 3, 4, 0, 1, 2], 3)
    with pytest.raises(StopIteration):
        it.next()
    it.reset()
    with pytest.raises(MXNetError, match="bigger than batch size"):
        it.next()  # the next pass starts at row 3 and cannot fill a batch (MXNet fails too)
    it = mx.io.CSVIter(data_csv=d, data_shape=(3,), batch_size=8, round_batch=False)
    b = it.next()
    assert b.pad == 3 and b.data[0].asnumpy()[:5, 0].tolist() == [1, 2, 3, 4, 5]


def test_csviter_reset_mid_epoch(tmp_path):
    (tmp_path / "big.csv").write_text("".join("%d,%d\n" % (i, -i) for i in range(40)))
    it = mx.io.CSVIter(data_csv=str(tmp_path / "big.csv"), data_shape=(2,), batch_size=3)
    it.next(), it.next()
    it.reset()
    got = [(b.index.tolist(), b.pad) for b in it]
    assert got[0] == ([0, 1, 2], 0) and got[-1] == ([39, 0, 1], 2) and len(got) == 14


# --------------------------------------------------------------------------- MNISTIter

N_IMG = 23
RAW = (np.arange(N_IMG * 4 * 3) * 7 % 256).reshape(N_IMG, 4, 3).astype(np.uint8)


def write_idx(path, arr, magic, gz=False):
    payload = struct.pack(">I", magic) + struct.pack(">%dI" % arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(str(path), "wb") as f:
        f.write(payload)
    return str(path)


@pytest.fixture
def mnist(tmp_path):
    return (write_idx(tmp_path / "img", RAW, 2051), write_idx(tmp_path / "lab", np.arange(N_IMG), 2049))


def mnist_epochs(it, n):
    out = []
    for _ in range(n):
        ep = []
        for b in it:
            lab = b.label[0].asnumpy().astype(int)
            np.testing.assert_array_equal(b.data[0].asnumpy().reshape(len(lab), 4, 3), RAW[lab] / np.float32(256))
            ep.append(lab.tolist())
        out.append(ep)
        it.reset()
    return out


@pytest.mark.parametrize("kwargs,expected", [
    (dict(batch_size=5), [[[16, 2, 3, 5, 14], [18, 13, 19, 4, 7], [20, 8, 9, 10, 15], [12, 0, 21, 22, 11]]] * 2),
    (dict(batch_size=7, seed=9), [[[10, 17, 16, 21, 3, 13, 19], [22, 5, 7, 20, 12, 8, 4], [11, 0, 14, 9, 2, 1, 6]]]),
    (dict(batch_size=2, shuffle=False, num_parts=3, part_index=1), [[[7, 8], [9, 10], [11, 12], [13, 14]]]),
    (dict(batch_size=2, seed=4, num_parts=4, part_index=3), [[[21, 18], [20, 19], [17, 22]]]),
])
def test_mnistiter_order_matches_mxnet(mnist, kwargs, expected):
    it = mx.io.MNISTIter(image=mnist[0], label=mnist[1], silent=True, **kwargs)
    assert mnist_epochs(it, len(expected)) == expected


def test_mnistiter_shapes_flat_and_gz(mnist, tmp_path):
    it = mx.io.MNISTIter(image=mnist[0], label=mnist[1], batch_size=4, shuffle=False)
    assert [(d.name, d.shape, d.dtype) for d in it.provide_data] == [("data", (4, 1, 4, 3), np.float32)]
    assert [(d.name, d.shape, d.dtype) for d in it.provide_label] == [("softmax_label", (4,), np.float32)]
    it = mx.io.MNISTIter(image=mnist[0], label=mnist[1], batch_size=4, shuffle=False, flat=True, silent=True)
    b = it.next()
    assert b.data[0].shape == (4, 12) and b.index.tolist() == [0, 0, 0, 0] and b.pad == 0
    assert b.data[0].asnumpy()[1, :4].tolist() == [0.328125, 0.35546875, 0.3828125, 0.41015625]
    gz = mx.io.MNISTIter(image=write_idx(tmp_path / "img.gz", RAW, 2051, gz=True),
                         label=write_idx(tmp_path / "lab.gz", np.arange(N_IMG), 2049, gz=True),
                         batch_size=4, shuffle=False, flat=True, silent=True)
    np.testing.assert_array_equal(gz.next().data[0].asnumpy(), b.data[0].asnumpy())
    assert it.iter_next() and it.getlabel().asnumpy().tolist() == [4, 5, 6, 7] and it.getpad() == 0


def test_mnistiter_errors(mnist, tmp_path):
    with pytest.raises(MXNetError, match="nofile"):
        mx.io.MNISTIter(image=str(tmp_path / "nofile"), label=mnist[1])
    with pytest.raises(MXNetError, match="nolabel"):
        mx.io.MNISTIter(image=mnist[0], label=str(tmp_path / "nolabel"))
    with pytest.raises(MXNetError, match="batch_size"):
        mx.io.MNISTIter(image=mnist[0], label=mnist[1], batch_size=24)
    with pytest.raises(MXNetError, match="part_index"):
        mx.io.MNISTIter(image=mnist[0], label=mnist[1], num_parts=3, part_index=3)


def test_record_iterators_point_to_gluon():
    with pytest.raises(NotImplementedError, match="ImageRecordDataset"):
        mx.io.ImageRecordIter(path_imgrec="x.rec", data_shape=(3, 4, 4), batch_size=2)
    with pytest.raises(NotImplementedError, match="CSR"):
        mx.io.LibSVMIter(data_libsvm="x", data_shape=(3,), batch_size=2)
