"""mx.image (Pillow-backed decoding), image datasets and image records."""
from __future__ import annotations

import numpy as np
import pytest

import kiln as mx
from kiln import recordio
from kiln.gluon.data import vision

Image = pytest.importorskip("PIL.Image")

# MXNet 1.9.1's mx.image.imread(path, 0) of PIXELS saved as PNG (OpenCV's grey conversion)
GREY = [[43, 134, 196, 60, 151, 213, 77, 168], [80, 171, 82, 97, 188, 99, 114, 176],
        [117, 179, 43, 134, 196, 60, 151, 213], [154, 216, 80, 171, 82, 97, 188, 99],
        [191, 102, 117, 179, 43, 134, 196, 60], [199, 63, 154, 216, 80, 171, 82, 97]]


def _pixels():
    i, j, c = np.meshgrid(np.arange(6), np.arange(8), np.arange(3), indexing="ij")
    return ((i * 37 + j * 91 + c * 53) % 256).astype(np.uint8)


def _save(path, pixels, **kw):
    Image.fromarray(pixels).save(str(path), **kw)
    return str(path)


def test_imread_png_colour_grey_and_bgr(tmp_path):
    path = _save(tmp_path / "a.png", _pixels())
    rgb = mx.image.imread(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (6, 8, 3)
    np.testing.assert_array_equal(rgb.asnumpy(), _pixels())
    np.testing.assert_array_equal(mx.image.imread(path, to_rgb=False).asnumpy(), _pixels()[:, :, ::-1])
    np.testing.assert_array_equal(mx.image.imread(path, 0).asnumpy()[:, :, 0], GREY)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(mx.image.imdecode(f.read()).asnumpy(), _pixels())


def test_imread_jpeg_is_close(tmp_path):
    smooth = np.repeat(np.repeat(_pixels()[:3, :4], 8, 0), 8, 1)
    img = mx.image.imread(_save(tmp_path / "a.jpg", smooth, quality=95)).asnumpy()
    assert img.shape == smooth.shape
    assert np.abs(img.astype(int) - smooth).mean() < 8  # lossy; swapped channels would give ~50


def test_image_errors(tmp_path):
    with pytest.raises(mx.MXNetError, match="no such file"):
        mx.image.imread(str(tmp_path / "missing.png"))
    with pytest.raises(mx.MXNetError, match="cannot decode"):
        mx.image.imdecode(b"not an image")
    with pytest.raises(mx.MXNetError, match="flag"):
        mx.image.imdecode(b"", flag=-1)


def test_imresize_bilinear_keeps_constant_and_shape():
    img = mx.nd.array(np.full((4, 6, 3), 77, np.uint8), dtype="uint8")
    out = mx.image.imresize(img, 9, 5)
    assert out.shape == (5, 9, 3) and (out.asnumpy() == 77).all()


def test_image_folder_dataset(tmp_path):
    for k, cls in enumerate(("cat", "dog")):
        (tmp_path / cls).mkdir()
        _save(tmp_path / cls / "0.png", _pixels() + k)
    (tmp_path / "dog" / "notes.txt").write_text("x")
    with pytest.warns(UserWarning, match="notes.txt"):
        folder = vision.ImageFolderDataset(str(tmp_path))
    assert folder.synsets == ["cat", "dog"] and len(folder) == 2
    assert folder.items[1] == (str(tmp_path / "dog" / "0.png"), 1)
    img, label = folder[1]
    assert label == 1
    np.testing.assert_array_equal(img.asnumpy(), _pixels() + 1)
    with pytest.warns(UserWarning, match="notes.txt"):
        grey = vision.ImageFolderDataset(str(tmp_path), flag=0, transform=lambda x, y: (x.shape, y))
    assert grey[0] == ((6, 8, 1), 0)


@pytest.mark.parametrize("fmt", [".png", ".jpg"])
def test_pack_img_round_trip_and_image_record_dataset(tmp_path, fmt):
    bgr = np.repeat(np.repeat(_pixels()[:3, :4], 8, 0), 8, 1)[:, :, ::-1].copy()
    record = recordio.pack_img(recordio.IRHeader(0, 4.0, 9, 0), bgr, quality=95 if fmt == ".jpg" else 3,
                               img_fmt=fmt)
    header, img = recordio.unpack_img(record)
    assert header.label == 4.0 and header.id == 9 and img.shape == bgr.shape
    tol = 0 if fmt == ".png" else 8
    assert np.abs(img.astype(int) - bgr).mean() <= tol
    writer = recordio.MXIndexedRecordIO(str(tmp_path / "i.idx"), str(tmp_path / "i.rec"), "w")
    writer.write_idx(0, record)
    writer.close()
    data = vision.ImageRecordDataset(str(tmp_path / "i.rec"))
    rgb, label = data[0]
    assert label == 4.0 and rgb.shape == bgr.shape
    np.testing.assert_array_equal(rgb.asnumpy(), img[:, :, ::-1])
    with pytest.raises(mx.MXNetError, match="format"):
        recordio.pack_img(recordio.IRHeader(0, 1, 0, 0), bgr, img_fmt=".bmp")
