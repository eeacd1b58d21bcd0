"""Image transforms (``mx.gluon.data.vision.transforms``), as Blocks over HWC / CHW NDArrays.

Cast, ToTensor and Normalize are HybridBlocks built from registry operators, so they
hybridize (Compose hybridizes runs of them, as MXNet). Resize and the crops are Blocks that
resample with numpy (``mx.image.resize_np``: OpenCV's nearest and bilinear geometry),
because kiln has no image-resize operator; other interpolation modes raise NotImplementedError.
The random transforms draw from Python's ``random`` (crops, as MXNet's image module) and
kiln's generator (flips), so ``mx.random.seed`` does not fix the crops, as in MXNet.
"""
from __future__ import annotations

import math
import random

import numpy as np

from ....image import resize_np
from ...block import Block, HybridBlock
from ...nn import HybridSequential, Sequential
from .... import ndarray as nd
from ....base import MXNetError, numeric_types

__all__ = ["Compose", "Cast", "ToTensor", "Normalize", "Resize", "CenterCrop", "RandomResizedCrop",
           "RandomFlipLeftRight", "RandomFlipTopBottom"]


class Compose(Sequential):
    """Applies ``transforms`` in order; consecutive HybridBlocks are grouped in a hybridized HybridSequential."""

    def __init__(self, transforms):
        super().__init__()
        hybrid = []
        for t in list(transforms) + [None]:
            if isinstance(t, HybridBlock):
                hybrid.append(t)
                continue
            if len(hybrid) == 1:
                self.add(hybrid[0])
            elif len(hybrid) > 1:
                block = HybridSequential()
                block.add(*hybrid)
                block.hybridize()
                self.add(block)
            hybrid = []
            if t is not None:
                self.add(t)


class Cast(HybridBlock):
    """Casts the input to ``dtype``."""

    def __init__(self, dtype="float32"):
        super().__init__()
        self._dtype = dtype

    def hybrid_forward(self, F, x):
        return F.cast(x, dtype=self._dtype)


class ToTensor(HybridBlock):
    """(H, W, C) or (N, H, W, C) image in [0, 255] -> float32 (C, H, W) / (N, C, H, W) in [0, 1]."""

    def hybrid_forward(self, F, x):
        # two swaps move the channel axis before H and W whatever the rank (HWC or NHWC)
        x = F.swapaxes(F.swapaxes(F.cast(x, dtype="float32"), dim1=-1, dim2=-3), dim1=-1, dim2=-2)
        return x / 255.0


class Normalize(HybridBlock):
    """(C, H, W) or (N, C, H, W) tensor -> (x - mean[c]) / std[c] per channel (scalars for all channels)."""

    def __init__(self, mean=0.0, std=1.0):
        super().__init__()
        self._mean = mean
        self._std = std

    def hybrid_forward(self, F, x):
        mean = [self._mean] if isinstance(self._mean, numeric_types) else list(self._mean)
        std = [self._std] if isinstance(self._std, numeric_types) else list(self._std)
        channels = max(len(mean), len(std))
        if channels == 1:
            return (x - float(mean[0])) / float(std[0])
        mean = mean * channels if len(mean) == 1 else mean
        std = std * channels if len(std) == 1 else std
        if len(mean) != len(std):
            raise MXNetError("Normalize: mean has %d values and std %d; give one per channel" % (len(mean), len(std)))
        parts = F.split(x, num_outputs=channels, axis=-3)
        return F.concat(*[(parts[c] - float(mean[c])) / float(std[c]) for c in range(channels)], dim=-3)


def _as_image(x, what):
    if not isinstance(x, nd.NDArray):
        raise MXNetError("%s expects an NDArray image, got %s" % (what, type(x).__name__))
    if x.ndim not in (3, 4):
        raise MXNetError("%s expects an (H, W, C) or (N, H, W, C) image, got shape %s" % (what, x.shape))
    return x.asnumpy()


def _to_nd(img, like):
    """Result image as an NDArray beside ``like``; C-contiguous, as compiled programs require."""
    return nd.NDArray(np.ascontiguousarray(img), like.context)


def _fixed_crop(img, x0, y0, w, h, size, interp):
    out = img[y0:y0 + h, x0:x0 + w, :]
    if size is not None and (w, h) != tuple(size):
        out = resize_np(out, size[0], size[1], interp)
    return out


def _pair(size):
    return (size, size) if isinstance(size, numeric_types) else tuple(size)


def _center_crop_np(img, size, interp):
    """MXNet's image.center_crop: the largest centred region with ``size``'s aspect ratio that
    fits (the size itself when it fits), resized to ``size`` = (w, h)."""
    h, w = img.shape[0], img.shape[1]
    sw, sh = size
    if sh > h:
        sw, sh = sw * h / sh, h
    if sw > w:
        sw, sh = w, sh * w / sw
    new_w, new_h = int(sw), int(sh)
    x0, y0 = int((w - new_w) / 2), int((h - new_h) / 2)
    return _fixed_crop(img, x0, y0, new_w, new_h, size, interp)


class Resize(Block):
    """Resizes an (H, W, C) or (N, H, W, C) image to ``size`` = (w, h), or int for a square; with
    ``keep_ratio`` and an int size the shorter edge becomes ``size`` and the other keeps the aspect ratio."""

    def __init__(self, size, keep_ratio=False, interpolation=1):
        super().__init__()
        self._size = size
        self._keep = keep_ratio
        self._interpolation = interpolation

    def _target(self, h, w):
        if isinstance(self._size, numeric_types) or len(self._size) == 1:
            s = int(self._size if isinstance(self._size, numeric_types) else self._size[0])
            if not self._keep:
                return s, s
            if h > w:
                return s, s * h // w
            return s * w // h, s
        return int(self._size[0]), int(self._size[1])

    def forward(self, x):
        img = _as_image(x, "Resize")
        out_w, out_h = self._target(img.shape[-3], img.shape[-2])
        return _to_nd(resize_np(img, out_w, out_h, self._interpolation), x)


class CenterCrop(Block):
    """Crops the centre of an (H, W, C) image to ``size`` = (w, h) or int; an image smaller than
    ``size`` gives its largest centred region of that aspect ratio, resized up (MXNet's center_crop)."""

    def __init__(self, size, interpolation=1):
        super().__init__()
        self._size = _pair(size)
        self._interpolation = interpolation

    def forward(self, x):
        img = _as_image(x, "CenterCrop")
        if img.ndim != 3:
            raise MXNetError("CenterCrop expects one (H, W, C) image, got shape %s" % (img.shape,))
        out = _center_crop_np(img, self._size, self._interpolation)
        return _to_nd(out, x)


class RandomResizedCrop(Block):
    """Crops a random region of an (H, W, C) image, of area ``scale`` x the image's and aspect ratio in
    ``ratio`` (log-uniform), and resizes it to ``size``; after 10 failed draws, a centre crop (as MXNet)."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0), interpolation=1):
        super().__init__()
        self._size = _pair(size)
        self._scale = (scale, 1.0) if isinstance(scale, numeric_types) else tuple(scale)
        self._ratio = tuple(ratio)
        self._interpolation = interpolation

    def forward(self, x):
        img = _as_image(x, "RandomResizedCrop")
        if img.ndim != 3:
            raise MXNetError("RandomResizedCrop expects one (H, W, C) image, got shape %s" % (img.shape,))
        h, w = img.shape[0], img.shape[1]
        out = None
        log_ratio = (math.log(self._ratio[0]), math.log(self._ratio[1]))
        for _ in range(10):
            target_area = random.uniform(self._scale[0], self._scale[1]) * h * w
            new_ratio = math.exp(random.uniform(*log_ratio))
            new_w = int(round(math.sqrt(target_area * new_ratio)))
            new_h = int(round(math.sqrt(target_area / new_ratio)))
            if 0 < new_w <= w and 0 < new_h <= h:
                x0 = random.randint(0, w - new_w)
                y0 = random.randint(0, h - new_h)
                out = _fixed_crop(img, x0, y0, new_w, new_h, self._size, self._interpolation)
                break
        if out is None:
            out = _center_crop_np(img, self._size, self._interpolation)
        return _to_nd(out, x)


class _RandomFlip(Block):
    _axis = None

    def forward(self, x):
        if nd.random.uniform(0, 1, shape=(1,)).asscalar() < 0.5:
            return nd.flip(x, axis=self._axis)
        return x


class RandomFlipLeftRight(_RandomFlip):
    """Flips an (H, W, C) or (N, H, W, C) image horizontally with probability 0.5."""

    _axis = -2


class RandomFlipTopBottom(_RandomFlip):
    """Flips an (H, W, C) or (N, H, W, C) image vertically with probability 0.5."""

    _axis = -3
