"""gluon.data: datasets, samplers, DataLoader (in-process, worker processes, threads); gluon.utils file helpers."""
import gc
import multiprocessing
import os
import time

import numpy as np
import pytest

import kiln as mx
from kiln.gluon import utils
from kiln.gluon.data import (ArrayDataset, BatchSampler, DataLoader, FilterSampler, RandomSampler, SequentialSampler,
                             SimpleDataset)
from kiln.gluon.data.dataloader import default_batchify_fn


# ---- module-level objects, so that spawned worker processes can unpickle them ----
class SquareDataset(mx.gluon.data.Dataset):
    """Samples (NDArray row computed with a kiln operator, numpy int label)."""

    def __init__(self, n):
        self._x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)

    def __len__(self):
        return len(self._x)

    def __getitem__(self, idx):
        return mx.nd.array(self._x[idx]) * 2, np.int32(idx)


class RaisingDataset(mx.gluon.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, idx):
        if idx == 5:
            raise ValueError("bad sample %d" % idx)
        return np.float32(idx)


class DyingDataset(mx.gluon.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, idx):
        if idx == 2:
            os._exit(3)
        return np.float32(idx)


def _double(x):
    return x * 2


def _as_list(batch):
    if isinstance(batch, (list, tuple)):
        return [_as_list(b) for b in batch]
    return batch.asnumpy().tolist()


# ---- datasets ----
def test_array_dataset_numpy_and_nd_members():
    X = np.arange(14, dtype=np.float32).reshape(7, 2)
    y = np.arange(7, dtype=np.int32) * 10
    ds = ArrayDataset(X, y)
    assert len(ds) == 7
    data, label = ds[3]
    assert isinstance(data, np.ndarray) and isinstance(label, np.int32)
    np.testing.assert_array_equal(data, [6, 7])
    nds = ArrayDataset(mx.nd.array(X), mx.nd.array(y))
    data, label = nds[2]
    assert isinstance(data, mx.nd.NDArray) and data.shape == (2,)
    assert isinstance(label, np.float32) and label == 20  # 1-D NDArrays become numpy, as MXNet
    single = ArrayDataset(X)
    assert isinstance(single[1], np.ndarray) and single[1].tolist() == [2, 3]
    lists = ArrayDataset([1, 2, 3], ["a", "b", "c"])
    assert lists[1] == (2, "b")
    with pytest.raises(ValueError, match="same length"):
        ArrayDataset(X, y[:3])
    with pytest.raises(ValueError):
        ArrayDataset()


def test_dataset_transform_filter_take_shard_sample():
    ds = SimpleDataset(list(range(10)))
    calls = []

    def square(v):
        calls.append(v)
        return v * v
    lazy = ds.transform(square)
    assert calls == [] and lazy[3] == 9 and calls == [3]
    eager = ds.transform(square, lazy=False)
    assert isinstance(eager, SimpleDataset) and list(eager) == [v * v for v in range(10)]
    pairs = ArrayDataset(np.arange(4.0), np.arange(4) * 10)
    assert pairs.transform(lambda d, l: (d + 1, int(l) - 1))[1] == (2.0, 9)
    first = pairs.transform_first(lambda d: d * 2)
    assert first[2] == (4.0, 20)
    assert SimpleDataset([1, 2]).transform_first(lambda d: -d)[1] == -2  # non-tuple samples
    assert list(ds.filter(lambda v: v % 3 == 0)) == [0, 3, 6, 9]
    assert list(ds.take(3)) == [0, 1, 2] and len(ds.take(None)) == 10 and len(ds.take(50)) == 10
    assert [list(ds.shard(3, i)) for i in range(3)] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError):
        ds.shard(3, 3)
    assert list(ds.sample(SequentialSampler(3, start=5))) == [5, 6, 7]
    with pytest.raises(TypeError):
        ds.sample([1, 2])


# ---- samplers ----
def test_samplers():
    assert list(SequentialSampler(4, start=3)) == [3, 4, 5, 6]
    perm = list(RandomSampler(10))
    assert sorted(perm) == list(range(10)) and len(RandomSampler(10)) == 10
    fs = FilterSampler(lambda v: v > 2, [5, 1, 3, 0])
    assert list(fs) == [0, 2] and len(fs) == 2


@pytest.mark.parametrize("last,epochs,lens", [
    ("keep", [[[0, 1, 2], [3, 4, 5], [6]]] * 2, [3, 3]),
    ("discard", [[[0, 1, 2], [3, 4, 5]]] * 2, [2, 2]),
    ("rollover", [[[0, 1, 2], [3, 4, 5]], [[6, 0, 1], [2, 3, 4]], [[5, 6, 0], [1, 2, 3], [4, 5, 6]]], [2, 2, 3]),
])
def test_batch_sampler_last_batch(last, epochs, lens):
    bs = BatchSampler(SequentialSampler(7), 3, last)
    for expected, n in zip(epochs, lens):
        assert len(bs) == n
        assert list(bs) == expected


def test_batch_sampler_bad_mode():
    bs = BatchSampler(SequentialSampler(7), 3, "pad")
    with pytest.raises(ValueError, match="last_batch"):
        len(bs)
    with pytest.raises(ValueError, match="last_batch"):
        list(bs)


# ---- DataLoader, in process ----
def test_default_batchify_dtypes():
    assert default_batchify_fn([1.5, 2.5]).dtype == np.float64  # numpy's dtype is kept
    assert default_batchify_fn([1, 2]).dtype == np.int64
    assert default_batchify_fn([np.float32(1), np.float32(2)]).dtype == np.float32
    nd = default_batchify_fn([mx.nd.ones((2,), dtype="float16"), mx.nd.zeros((2,), dtype="float16")])
    assert nd.dtype == np.float16 and nd.shape == (2, 2)
    fields = default_batchify_fn([(1, 2.0), (3, 4.0)])
    assert isinstance(fields, list) and fields[0].asnumpy().tolist() == [1, 3] and fields[1].dtype == np.float64


def test_dataloader_last_batch_and_rollover():
    X = np.arange(14, dtype=np.float32).reshape(7, 2)
    ds = ArrayDataset(X, np.arange(7, dtype=np.int32))
    keep = DataLoader(ds, batch_size=3)
    assert len(keep) == 3 and [b[1].asnumpy().tolist() for b in keep] == [[0, 1, 2], [3, 4, 5], [6]]
    discard = DataLoader(ds, batch_size=3, last_batch="discard")
    assert [b[1].asnumpy().tolist() for b in discard] == [[0, 1, 2], [3, 4, 5]]
    roll = DataLoader(ds, batch_size=3, last_batch="rollover")
    assert len(roll) == 2
    assert [b[1].asnumpy().tolist() for b in roll] == [[0, 1, 2], [3, 4, 5]]
    assert len(roll) == 2  # (1 carried + 7) // 3
    epoch1 = [b[1].asnumpy().tolist() for b in roll]
    assert epoch1 == [[6, 0, 1], [2, 3, 4]]
    assert len(roll) == 3  # (2 carried + 7) // 3
    data = next(iter(roll))[0]
    assert data.dtype == np.float32 and data.asnumpy().tolist() == [[10, 11], [12, 13], [0, 1]]


def test_dataloader_arguments():
    ds = SimpleDataset(list(range(10)))
    loader = DataLoader(ds, batch_sampler=BatchSampler(SequentialSampler(10), 4))
    assert [b.asnumpy().tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    shuffled = np.concatenate([b.asnumpy() for b in DataLoader(ds, batch_size=4, shuffle=True)])
    assert sorted(shuffled.tolist()) == list(range(10))
    custom = DataLoader(ds, batch_size=4, batchify_fn=lambda samples: sum(samples))
    assert list(custom) == [6, 22, 17]
    with pytest.raises(ValueError, match="batch_size must be specified"):
        DataLoader(ds)
    with pytest.raises(ValueError, match="must not be specified"):
        DataLoader(ds, batch_size=2, batch_sampler=BatchSampler(SequentialSampler(10), 4))
    with pytest.raises(ValueError, match="shuffle"):
        DataLoader(ds, batch_size=2, shuffle=True, sampler=SequentialSampler(10))
    pinned = next(iter(DataLoader(ds, batch_size=2, pin_memory=True)))
    assert pinned.context == mx.cpu_pinned(0)


def test_dataloader_auto_reload():
    ds = SimpleDataset(list(range(4)))
    loader = DataLoader(ds, batch_size=2, auto_reload=True)
    assert [b.asnumpy().tolist() for b in loader] == [[0, 1], [2, 3]]
    assert [b.asnumpy().tolist() for b in loader] == [[0, 1], [2, 3]]


# ---- DataLoader with workers ----
def test_workers_match_single_process():
    ds = SquareDataset(10)
    serial = [_as_list(b) for b in DataLoader(ds, batch_size=3)]
    loader = DataLoader(ds, batch_size=3, num_workers=2)
    assert len(loader) == 4
    for _ in range(2):  # the same pool serves several epochs
        batches = list(loader)
        assert [_as_list(b) for b in batches] == serial
        assert batches[0][0].context == mx.Context("cpu_shared", 0) and batches[0][0].dtype == np.float32
        assert batches[0][1].dtype == np.int32
    transformed = DataLoader(ArrayDataset(np.arange(6.0)).transform(_double), batch_size=4, num_workers=2,
                             last_batch="rollover")
    assert [b.asnumpy().tolist() for b in transformed] == [[0, 2, 4, 6]]
    assert [b.asnumpy().tolist() for b in transformed] == [[8, 10, 0, 2], [4, 6, 8, 10]]
    procs = list(loader._worker_pool._pool)
    del loader, transformed
    gc.collect()
    for p in procs:
        p.join(10)
        assert not p.is_alive()


def test_worker_error_surfaces_without_hanging():
    loader = DataLoader(RaisingDataset(), batch_size=2, num_workers=2, timeout=30)
    start = time.time()
    with pytest.raises(ValueError, match="bad sample 5"):
        for _ in loader:
            pass
    assert time.time() - start < 30


def test_dead_worker_times_out():
    loader = DataLoader(DyingDataset(), batch_size=1, num_workers=1, timeout=2)
    it = iter(loader)
    assert next(it).asnumpy().tolist() == [0]
    assert next(it).asnumpy().tolist() == [1]
    with pytest.raises(multiprocessing.TimeoutError, match="timed out after 2 seconds"):
        next(it)


def test_unpicklable_dataset_is_refused_clearly():
    ds = SimpleDataset(list(range(4))).transform(lambda v: v + 1)
    with pytest.raises(mx.MXNetError, match="picklable.*thread_pool=True"):
        DataLoader(ds, batch_size=2, num_workers=1)


def test_thread_pool_workers():
    ds = SimpleDataset(list(range(7))).transform(lambda v: mx.nd.array([v]) + 1)
    loader = DataLoader(ds, batch_size=3, num_workers=2, thread_pool=True, prefetch=1)
    expected = [[[1], [2], [3]], [[4], [5], [6]], [[7]]]
    assert [b.asnumpy().tolist() for b in loader] == expected
    assert [b.asnumpy().tolist() for b in loader] == expected
    bad = DataLoader(RaisingDataset(), batch_size=2, num_workers=2, thread_pool=True)
    with pytest.raises(ValueError, match="bad sample 5"):
        list(bad)


# ---- gluon.utils file helpers ----
def test_check_sha1_and_replace_file(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"kiln")
    digest = "7908ea50dacbb9a91898af51d70a054211d46dee"
    import hashlib
    assert hashlib.sha1(b"kiln").hexdigest() == digest
    assert utils.check_sha1(str(f), digest)
    assert utils.check_sha1(str(f), digest[:8])
    assert not utils.check_sha1(str(f), "0" * 40)
    g = tmp_path / "b.bin"
    g.write_bytes(b"old")
    utils.replace_file(str(f), str(g))
    assert g.read_bytes() == b"kiln" and not f.exists()


def test_download_never_uses_the_network(tmp_path):
    url = "https://example.invalid/data/file.bin"
    with pytest.raises(mx.MXNetError, match="example.invalid/data/file.bin"):
        utils.download(url, path=str(tmp_path))
    target = tmp_path / "file.bin"
    target.write_bytes(b"kiln")
    assert utils.download(url, path=str(tmp_path)) == str(target)
    assert utils.download(url, path=str(target), sha1_hash="7908ea50") == str(target)
    with pytest.raises(mx.MXNetError, match="SHA-1"):
        utils.download(url, path=str(target), sha1_hash="0" * 40)
    with pytest.raises(mx.MXNetError, match="overwrite"):
        utils.download(url, path=str(target), overwrite=True)
