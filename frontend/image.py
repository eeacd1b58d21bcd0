"""``mx.image``: image decoding, encoding and resizing for the data pipeline.

MXNet decodes with OpenCV; kiln uses Pillow (an optional dependency, ``pip install
kiln[image]``), a well-kept codec library, instead of hand-written decoders. Images are
HWC uint8 arrays, RGB unless ``to_rgb=False`` (then BGR, OpenCV's order, which
``recordio.pack_img``/``unpack_img`` use as MXNet does). PNG decodes to the same pixels as
OpenCV; JPEG decoders may differ by a few levels between libjpeg builds.

Resizing: interpolation 1 (bilinear) uses OpenCV's INTER_LINEAR geometry (pixel centres,
source x = (x + 0.5) * in/out - 0.5, clamped to the edge) with exact float weights, where
OpenCV rounds them to 11-bit fixed point for uint8 images, so uint8 results can differ from
MXNet's by 1; interpolation 0 is INTER_NEAREST (source x = floor(x * in/out)).
"""
from __future__ import annotations

import io
import os

import numpy as np

from .base import MXNetError
from .ndarray import NDArray, array

__all__ = ["imread", "imdecode", "imresize"]


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("mx.image needs Pillow to decode and encode images: pip install 'kiln[image]' "
                          "(or pip install Pillow)") from None
    return Image


def _grey(img):
    """Grey levels as OpenCV's IMREAD_GRAYSCALE: JPEG's own luma channel (libjpeg decodes
    straight to grey); otherwise the truncated 0.299/0.587/0.114 sum in libpng's 15-bit fixed
    point (MXNet's libpng path differs by one level on about 0.1% of pixels)."""
    if img.mode == "L":
        return np.asarray(img)
    rgb = np.asarray(img.convert("RGB")).astype(np.int64)
    return ((rgb[..., 0] * 9798 + rgb[..., 1] * 19235 + rgb[..., 2] * 3735) >> 15).astype(np.uint8)


def decode_np(buf, flag=1, to_rgb=True, what="image"):
    """Bytes of an encoded image -> HWC uint8 numpy: 3 channels for flag 1, 1 for flag 0,
    the file's own channels for flag -1 (OpenCV's IMREAD_UNCHANGED)."""
    Image = _pillow()
    try:
        img = Image.open(io.BytesIO(bytes(buf)))
        if flag == 0 and img.format == "JPEG":
            img.draft("L", img.size)  # libjpeg's own grey output, as OpenCV asks for
        img.load()
    except Exception as err:  # Pillow raises several types for undecodable data
        raise MXNetError("cannot decode %s (%d bytes): %s" % (what, len(buf), err)) from None
    if flag == 0:
        out = _grey(img)[:, :, None]
    elif flag == 1 or img.mode not in ("L", "RGB", "RGBA"):
        out = np.asarray(img.convert("RGB"))
    else:
        out = np.asarray(img)
        out = out[:, :, None] if out.ndim == 2 else out
    if not to_rgb and out.shape[2] >= 3:
        out = np.concatenate([out[:, :, 2::-1], out[:, :, 3:]], axis=2)
    return np.ascontiguousarray(out)


def encode_np(img, quality=95, img_fmt=".jpg"):
    """HWC (or HW) uint8 numpy in BGR order, as OpenCV's imencode takes it -> encoded bytes."""
    Image = _pillow()
    formats = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
    if img_fmt.lower() not in formats:
        raise MXNetError("image encoding: format %r is not supported (use .jpg or .png)" % img_fmt)
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise MXNetError("image encoding needs an (H, W[, 1|3|4]) uint8 array, got %s %s" % (img.dtype, img.shape))
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    elif img.ndim == 3:
        img = np.concatenate([img[:, :, 2::-1], img[:, :, 3:]], axis=2)  # BGR(A) -> RGB(A)
    out = io.BytesIO()
    kind = formats[img_fmt.lower()]
    options = {"quality": int(quality)} if kind == "JPEG" else {"compress_level": min(9, max(0, int(quality)))}
    Image.fromarray(np.ascontiguousarray(img)).save(out, format=kind, **options)
    return out.getvalue()


def _check_flag(flag, fn):
    if flag not in (0, 1):
        raise MXNetError("%s: flag must be 0 (grey) or 1 (colour), got %r" % (fn, flag))


def imdecode(buf, flag=1, to_rgb=True, out=None):
    """Decode an image held in bytes (or a uint8 NDArray/numpy buffer) into an HWC uint8 NDArray."""
    _check_flag(flag, "imdecode")
    if isinstance(buf, NDArray):
        buf = buf.asnumpy()
    if isinstance(buf, np.ndarray):
        buf = buf.tobytes()
    img = array(decode_np(buf, flag, to_rgb), dtype="uint8")
    if out is not None:
        out[:] = img
        return out
    return img


def imread(filename, flag=1, to_rgb=True, out=None):
    """Read and decode an image file into an HWC uint8 NDArray."""
    _check_flag(flag, "imread")
    if not os.path.isfile(filename):
        raise MXNetError("imread: no such file %s" % filename)
    with open(filename, "rb") as f:
        buf = f.read()
    img = array(decode_np(buf, flag, to_rgb, what=filename), dtype="uint8")
    if out is not None:
        out[:] = img
        return out
    return img


def _axis_map(n_in, n_out, interp):
    """Source indices (and right-neighbour weights for bilinear) of each output pixel on one axis."""
    scale = n_in / n_out
    if interp == 0:
        return np.minimum(np.floor(np.arange(n_out) * scale).astype(np.int64), n_in - 1), None, None
    f = (np.arange(n_out) + 0.5) * scale - 0.5
    i0 = np.floor(f).astype(np.int64)
    w = f - i0
    low = i0 < 0
    i0[low], w[low] = 0, 0.0
    high = i0 >= n_in - 1
    i0[high], w[high] = n_in - 1, 0.0
    return i0, np.minimum(i0 + 1, n_in - 1), w


def resize_np(img, out_w, out_h, interp=1):
    """Resize an (H, W, C) or (N, H, W, C) numpy image; same dtype out (integers rounded and clipped)."""
    if interp not in (0, 1):
        raise NotImplementedError("image resize with interpolation=%r: kiln implements 0 (nearest) and 1 "
                                  "(bilinear) only" % (interp,))
    if out_w <= 0 or out_h <= 0:
        raise MXNetError("image resize to %dx%d: sizes must be positive" % (out_w, out_h))
    h, w = img.shape[-3], img.shape[-2]
    y0, y1, wy = _axis_map(h, out_h, interp)
    x0, x1, wx = _axis_map(w, out_w, interp)
    if interp == 0:
        return img[..., y0, :, :][..., :, x0, :]
    src = img.astype(np.float64)
    wy = wy[:, None, None]
    wx = wx[:, None]
    rows = src[..., y0, :, :] * (1 - wy) + src[..., y1, :, :] * wy
    out = rows[..., :, x0, :] * (1 - wx) + rows[..., :, x1, :] * wx
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(img.dtype)


def imresize(src, w, h, interp=1, out=None):
    """Resize an HWC NDArray image to (h, w)."""
    img = NDArray(np.ascontiguousarray(resize_np(src.asnumpy(), w, h, interp)), src.context)
    if out is not None:
        out[:] = img
        return out
    return img
