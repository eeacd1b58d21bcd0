"""Vision datasets read from the files MXNet downloads; kiln never downloads, so a missing file
raises ``MXNetError`` naming the path expected and the URL MXNet would fetch it from.

MNIST/FashionMNIST: IDX files (big-endian u32 magic 2049 for labels, 2051 for images, then
the dimensions, then uint8 data), gzipped (``*.gz``, what MXNet stores) or plain.
CIFAR10: ``data_batch_{1..5}.bin``/``test_batch.bin``, records of 1 label byte + 3072 pixel
bytes (3x32x32, channel-major). CIFAR100: ``train.bin``/``test.bin``, records of coarse
label, fine label, 3072 pixel bytes. Images come back as HWC uint8 NDArrays, labels as int32.
"""
from __future__ import annotations

import gzip
import os
import struct
import warnings

import numpy as np

from .. import dataset
from .... import image, recordio
from .... import ndarray as nd
from ....base import MXNetError

__all__ = ["MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "ImageRecordDataset", "ImageFolderDataset"]

_REPO = "https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/"


def _data_dir():
    return os.getenv("MXNET_HOME", os.path.join("~", ".mxnet"))


def _repo_file_url(namespace, filename):
    repo = os.environ.get("MXNET_GLUON_REPO", _REPO)
    if not repo.endswith("/"):
        repo += "/"
    return "%sgluon/dataset/%s/%s" % (repo, namespace, filename)


def _missing(kind, paths, url):
    return MXNetError("%s: data file not found (looked for %s). kiln does not download datasets: fetch %s and "
                      "put it there." % (kind, " and ".join(paths), url))


class _LocalDataset(dataset.Dataset):
    """Base of the file-backed datasets: ``(data[i], label[i])`` through the optional transform."""

    def __init__(self, root, transform):
        self._transform = transform
        self._data = None
        self._label = None
        self._root = os.path.expanduser(root)
        self._get_data()

    def __getitem__(self, idx):
        if self._transform is not None:
            return self._transform(self._data[idx], self._label[idx])
        return self._data[idx], self._label[idx]

    def __len__(self):
        return len(self._label)

    def _get_data(self):
        raise NotImplementedError


def _read_idx(path, expect_magic):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fin:
            raw = fin.read()
    except (OSError, EOFError) as err:
        raise MXNetError("%s: cannot read IDX file: %s" % (path, err)) from err
    ndim = expect_magic & 0xFF
    if len(raw) < 4 + 4 * ndim:
        raise MXNetError("%s: truncated IDX header (%d bytes)" % (path, len(raw)))
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expect_magic:
        raise MXNetError("%s: IDX magic number %d, expected %d" % (path, magic, expect_magic))
    shape = struct.unpack(">%dI" % ndim, raw[4:4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(shape)):
        raise MXNetError("%s: IDX header announces shape %s (%d bytes), file holds %d bytes of data"
                         % (path, shape, int(np.prod(shape)), len(body)))
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


class MNIST(_LocalDataset):
    """MNIST digits from ``root``: samples ``(NDArray (28, 28, 1) uint8, int32 label)``.

    Reads ``train-images-idx3-ubyte.gz``/``train-labels-idx1-ubyte.gz`` (``t10k-*`` when
    ``train=False``), or the same names without ``.gz``.
    """

    _namespace = "mnist"

    def __init__(self, root=os.path.join(_data_dir(), "datasets", "mnist"), train=True, transform=None):
        self._train = train
        super().__init__(root, transform)

    def _find(self, name):
        gz = os.path.join(self._root, name + ".gz")
        for path in (gz, os.path.join(self._root, name)):
            if os.path.isfile(path):
                return path
        raise _missing(type(self).__name__, [gz, os.path.join(self._root, name)],
                       _repo_file_url(self._namespace, name + ".gz"))

    def _get_data(self):
        prefix = "train" if self._train else "t10k"
        label_file = self._find(prefix + "-labels-idx1-ubyte")
        data_file = self._find(prefix + "-images-idx3-ubyte")
        label = _read_idx(label_file, 2049).astype(np.int32)
        data = _read_idx(data_file, 2051)
        if data.shape[0] != label.shape[0]:
            raise MXNetError("%s has %d images but %s has %d labels" % (data_file, data.shape[0], label_file,
                                                                        label.shape[0]))
        self._data = nd.array(data.reshape(data.shape + (1,)), dtype=np.uint8)
        self._label = label


class FashionMNIST(MNIST):
    """Fashion-MNIST (same file names and layout as MNIST), default root ``$MXNET_HOME/datasets/fashion-mnist``."""

    _namespace = "fashion-mnist"

    def __init__(self, root=os.path.join(_data_dir(), "datasets", "fashion-mnist"), train=True, transform=None):
        super().__init__(root, train, transform)


class CIFAR10(_LocalDataset):
    """CIFAR-10 from the binary batches in ``root``: samples ``(NDArray (32, 32, 3) uint8, int32 label)``."""

    _namespace = "cifar10"
    _archive = "cifar-10-binary.tar.gz"
    _train_files = ["data_batch_%d.bin" % i for i in range(1, 6)]
    _test_files = ["test_batch.bin"]
    _label_bytes = 1

    def __init__(self, root=os.path.join(_data_dir(), "datasets", "cifar10"), train=True, transform=None):
        self._train = train
        super().__init__(root, transform)

    def _label_column(self):
        return 0

    def _read_batch(self, path):
        record = self._label_bytes + 3072
        with open(path, "rb") as fin:
            raw = fin.read()
        if len(raw) % record:
            raise MXNetError("%s: %d bytes is not a whole number of %d-byte CIFAR records" % (path, len(raw), record))
        data = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
        images = data[:, self._label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return images, data[:, self._label_column()].astype(np.int32)

    def _get_data(self):
        names = self._train_files if self._train else self._test_files
        paths = [os.path.join(self._root, name) for name in names]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise _missing(type(self).__name__, missing,
                           _repo_file_url(self._namespace, self._archive) + " (extract it)")
        data, label = zip(*(self._read_batch(p) for p in paths))
        data = np.concatenate(data)
        self._data = nd.array(data, dtype=data.dtype)
        self._label = np.concatenate(label)


class CIFAR100(CIFAR10):
    """CIFAR-100 from ``train.bin``/``test.bin``; ``fine_label`` picks the 100 classes over the 20 coarse ones."""

    _namespace = "cifar100"
    _archive = "cifar-100-binary.tar.gz"
    _train_files = ["train.bin"]
    _test_files = ["test.bin"]
    _label_bytes = 2

    def __init__(self, root=os.path.join(_data_dir(), "datasets", "cifar100"), fine_label=False, train=True,
                 transform=None):
        self._fine_label = fine_label
        super().__init__(root, train, transform)

    def _label_column(self):
        return 1 if self._fine_label else 0


class ImageRecordDataset(dataset.RecordFileDataset):
    """Images with labels in a RecordIO file (records made by ``recordio.pack_img``): each item
    is ``(HWC uint8 image, label)``, decoded with ``flag`` (1 colour, 0 grey)."""

    def __init__(self, filename, flag=1, transform=None):
        super().__init__(filename)
        self._flag = flag
        self._transform = transform

    def __getitem__(self, idx):
        header, img = recordio.unpack(super().__getitem__(idx))
        img = image.imdecode(img, self._flag)
        if self._transform is not None:
            return self._transform(img, header.label)
        return img, header.label


class ImageFolderDataset(dataset.Dataset):
    """Images in ``root/<class name>/<file>``: ``synsets`` (class names, sorted; label i is
    ``synsets[i]``) and ``items`` (``(path, label)`` pairs) as MXNet; an item is the decoded
    image (``mx.image.imread`` with ``flag``) and its label."""

    def __init__(self, root, flag=1, transform=None):
        self._root = os.path.expanduser(root)
        self._flag = flag
        self._transform = transform
        self._exts = [".jpg", ".jpeg", ".png"]
        self._list_images(self._root)

    def _list_images(self, root):
        self.synsets = []
        self.items = []
        for folder in sorted(os.listdir(root)):
            path = os.path.join(root, folder)
            if not os.path.isdir(path):
                warnings.warn("Ignoring %s, which is not a directory." % path, stacklevel=3)
                continue
            label = len(self.synsets)
            self.synsets.append(folder)
            for filename in sorted(os.listdir(path)):
                filename = os.path.join(path, filename)
                ext = os.path.splitext(filename)[1]
                if ext.lower() not in self._exts:
                    warnings.warn("Ignoring %s of type %s. Only support %s" % (filename, ext, ", ".join(self._exts)))
                    continue
                self.items.append((filename, label))

    def __getitem__(self, idx):
        path, label = self.items[idx]
        img = image.imread(path, self._flag)
        if self._transform is not None:
            return self._transform(img, label)
        return img, label

    def __len__(self):
        return len(self.items)
