"""gluon.data.vision: MNIST/FashionMNIST/CIFAR from fake files in the real formats, image transforms."""
import gzip
import struct

import numpy as np
import pytest

import kiln as mx
from kiln.gluon.data import DataLoader, vision
from kiln.gluon.data.vision import transforms as T


def _write_idx(path, arr, magic, compress):
    raw = struct.pack(">I", magic) + struct.pack(">%dI" % arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


def _fake_mnist(root, prefix, n, compress, seed=0):
    rng = np.random.RandomState(seed)
    images = rng.randint(0, 256, (n, 28, 28)).astype(np.uint8)
    labels = rng.randint(0, 10, n).astype(np.uint8)
    _write_idx(root / ("%s-images-idx3-ubyte" % prefix), images, 2051, compress)
    _write_idx(root / ("%s-labels-idx1-ubyte" % prefix), labels, 2049, compress)
    return images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_mnist(tmp_path, compress):
    images, labels = _fake_mnist(tmp_path, "train", 5, compress)
    test_images, test_labels = _fake_mnist(tmp_path, "t10k", 3, compress, seed=1)
    ds = vision.MNIST(root=str(tmp_path))
    assert len(ds) == 5
    img, label = ds[2]
    assert isinstance(img, mx.nd.NDArray) and img.shape == (28, 28, 1) and img.dtype == np.uint8
    np.testing.assert_array_equal(img.asnumpy()[:, :, 0], images[2])
    assert isinstance(label, np.int32) and label == labels[2]
    test = vision.FashionMNIST(root=str(tmp_path), train=False,
                               transform=lambda d, l: (d.astype("float32") / 255, l))
    img, label = test[1]
    assert len(test) == 3 and img.dtype == np.float32 and label == test_labels[1]
    np.testing.assert_allclose(img.asnumpy()[:, :, 0], test_images[1] / 255.0, rtol=1e-6)
    data, lab = next(iter(DataLoader(ds, batch_size=4)))
    assert data.shape == (4, 28, 28, 1) and data.dtype == np.uint8 and lab.dtype == np.int32


def test_mnist_missing_and_corrupt_files(tmp_path):
    with pytest.raises(mx.MXNetError, match="train-labels-idx1-ubyte.gz.*does not download"):
        vision.MNIST(root=str(tmp_path))
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3), 2049, False)
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28)), 2049, False)
    with pytest.raises(mx.MXNetError, match="train-images-idx3-ubyte: IDX magic number 2049, expected 2051"):
        vision.MNIST(root=str(tmp_path))
    _write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28, 28)), 2051, False)
    with pytest.raises(mx.MXNetError, match="2 images but .* 3 labels"):
        vision.MNIST(root=str(tmp_path))
    (tmp_path / "train-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 3, 28, 28) + b"\0" * 10)
    with pytest.raises(mx.MXNetError, match="holds 10 bytes"):
        vision.MNIST(root=str(tmp_path))


def _cifar_records(rng, n, label_bytes):
    labels = rng.randint(0, 100, (n, label_bytes)).astype(np.uint8)
    pixels = rng.randint(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    raw = np.concatenate([labels, pixels.reshape(n, -1)], axis=1).tobytes()
    return raw, labels, pixels


def test_cifar10(tmp_path):
    rng = np.random.RandomState(0)
    all_labels, all_pixels = [], []
    for i in range(1, 6):
        raw, labels, pixels = _cifar_records(rng, 2, 1)
        (tmp_path / ("data_batch_%d.bin" % i)).write_bytes(raw)
        all_labels.append(labels)
        all_pixels.append(pixels)
    raw, test_labels, test_pixels = _cifar_records(rng, 3, 1)
    (tmp_path / "test_batch.bin").write_bytes(raw)
    train = vision.CIFAR10(root=str(tmp_path))
    assert len(train) == 10
    img, label = train[7]
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and isinstance(label, np.int32)
    np.testing.assert_array_equal(img.asnumpy(), np.concatenate(all_pixels)[7].transpose(1, 2, 0))
    assert label == np.concatenate(all_labels)[7, 0]
    test = vision.CIFAR10(root=str(tmp_path), train=False)
    assert len(test) == 3 and test[2][1] == test_labels[2, 0]
    (tmp_path / "test_batch.bin").write_bytes(raw[:-1])
    with pytest.raises(mx.MXNetError, match="test_batch.bin: .* not a whole number of 3073-byte"):
        vision.CIFAR10(root=str(tmp_path), train=False)
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(mx.MXNetError, match="data_batch_3.bin.*cifar-10-binary.tar.gz"):
        vision.CIFAR10(root=str(tmp_path))


def test_cifar100(tmp_path):
    rng = np.random.RandomState(1)
    raw, labels, pixels = _cifar_records(rng, 4, 2)
    (tmp_path / "train.bin").write_bytes(raw)
    coarse = vision.CIFAR100(root=str(tmp_path))
    fine = vision.CIFAR100(root=str(tmp_path), fine_label=True)
    assert [int(coarse[i][1]) for i in range(4)] == labels[:, 0].tolist()
    assert [int(fine[i][1]) for i in range(4)] == labels[:, 1].tolist()
    np.testing.assert_array_equal(fine[3][0].asnumpy(), pixels[3].transpose(1, 2, 0))


# ---- transforms (expected values from MXNet 1.9.1, which resizes with OpenCV) ----
def test_resize_matches_mxnet():
    img = mx.nd.array(np.arange(6).reshape(2, 3, 1), dtype="float32")
    out = T.Resize((4, 3))(img)
    assert out.shape == (3, 4, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out.asnumpy()[..., 0], [[0.0, 0.625, 1.375, 2.0], [1.5, 2.125, 2.875, 3.5],
                                                        [3.0, 3.625, 4.375, 5.0]], rtol=1e-6)
    nearest = T.Resize((4, 3), interpolation=0)(img).asnumpy()[..., 0]
    assert nearest.tolist() == [[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 4, 5]]
    u = mx.nd.array(np.array([[0, 100, 255], [30, 60, 90]]).reshape(2, 3, 1), dtype="uint8")
    got = T.Resize((4, 3))(u).asnumpy()[..., 0].astype(int)
    mxnet = np.array([[0, 62, 158, 255], [15, 56, 115, 173], [30, 49, 71, 90]])
    assert got.dtype == int and np.abs(got - mxnet).max() <= 1  # OpenCV's 11-bit fixed-point weights
    batch = mx.nd.zeros((2, 7, 9, 3), dtype="uint8")
    assert T.Resize(5, keep_ratio=True)(batch).shape == (2, 5, 6, 3)
    assert T.Resize(5)(batch).shape == (2, 5, 5, 3)
    with pytest.raises(NotImplementedError, match="interpolation=3"):
        T.Resize(4, interpolation=3)(img)


def test_crops():
    img = mx.nd.array(np.arange(7 * 9 * 3).reshape(7, 9, 3), dtype="uint8")
    crop = T.CenterCrop((4, 3))(img)
    np.testing.assert_array_equal(crop.asnumpy(), img.asnumpy()[2:5, 2:6])
    assert T.CenterCrop((12, 6))(img).shape == (6, 12, 3)  # larger than the image: crop, then resize up
    for _ in range(5):
        out = T.RandomResizedCrop(4)(img)
        assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    full = T.RandomResizedCrop((9, 7), scale=(1.0, 1.0), ratio=(9 / 7, 9 / 7))(img)
    np.testing.assert_array_equal(full.asnumpy(), img.asnumpy())


def test_flips():
    img = mx.nd.array(np.arange(2 * 3 * 1).reshape(2, 3, 1), dtype="float32")
    seen = {tuple(T.RandomFlipLeftRight()(img).asnumpy().ravel()) for _ in range(40)}
    assert seen == {(0, 1, 2, 3, 4, 5), (2, 1, 0, 5, 4, 3)}
    seen = {tuple(T.RandomFlipTopBottom()(img).asnumpy().ravel()) for _ in range(40)}
    assert seen == {(0, 1, 2, 3, 4, 5), (3, 4, 5, 0, 1, 2)}


def test_to_tensor_normalize_compose():
    u = mx.nd.array(np.array([[0, 100, 255], [30, 60, 90]]).reshape(2, 3, 1), dtype="uint8")
    c = T.Compose([T.ToTensor(), T.Normalize(0.5, 0.5)])
    assert isinstance(c[0], mx.gluon.nn.HybridSequential)  # hybrid run grouped and hybridized, as MXNet
    out = c(u)
    assert out.shape == (1, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out.asnumpy(), [[[-1.0, -0.21568626, 1.0], [-0.7647059, -0.5294118, -0.2941176]]],
                               rtol=1e-5)
    rgb = np.random.RandomState(0).randint(0, 256, (4, 5, 3)).astype(np.uint8)
    t = T.ToTensor()(mx.nd.array(rgb, dtype="uint8"))
    np.testing.assert_allclose(t.asnumpy(), rgb.transpose(2, 0, 1) / 255.0, rtol=1e-6)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    norm = T.Normalize(mean, std)(t).asnumpy()
    expected = (rgb.transpose(2, 0, 1) / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(norm, expected, rtol=1e-5, atol=1e-6)
    batch = T.ToTensor()(mx.nd.array(rgb[None].repeat(2, 0), dtype="uint8"))
    assert batch.shape == (2, 3, 4, 5)
    pipeline = T.Compose([T.Resize(2), T.ToTensor(), T.Normalize(mean, std), T.Cast("float16")])
    assert pipeline(mx.nd.array(rgb, dtype="uint8")).shape == (3, 2, 2)
    assert pipeline(mx.nd.array(rgb, dtype="uint8")).dtype == np.float16


def test_mnist_pipeline_through_dataloader(tmp_path):
    _fake_mnist(tmp_path, "train", 6, True)
    ds = vision.MNIST(root=str(tmp_path)).transform_first(T.Compose([T.ToTensor(), T.Normalize(0.13, 0.31)]))
    data, label = next(iter(DataLoader(ds, batch_size=4, shuffle=True)))
    assert data.shape == (4, 1, 28, 28) and data.dtype == np.float32 and label.shape == (4,)
