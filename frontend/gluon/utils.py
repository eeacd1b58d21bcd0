"""Gluon helpers: splitting batches over contexts, global-norm clipping, hook handles, file checks."""
from __future__ import annotations

import collections
import hashlib
import os
import warnings
import weakref

import numpy as np

from ..base import MXNetError


def split_data(data, num_slice, batch_axis=0, even_split=True):
    """Split ``data`` into ``num_slice`` slices along ``batch_axis`` (a list even for one slice)."""
    from .. import ndarray as nd
    size = data.shape[batch_axis]
    if even_split and size % num_slice != 0:
        raise ValueError(
            "data with shape %s cannot be evenly split into %d slices along axis %d. Use a batch size that's "
            "multiple of %d or set even_split=False to allow uneven partitioning of data."
            % (str(data.shape), num_slice, batch_axis, num_slice))
    n_each, extras = divmod(size, num_slice)
    sizes = [0] + extras * [n_each + 1] + (num_slice - extras) * [n_each]
    div = np.cumsum(sizes)
    if batch_axis != 0:
        return [nd.slice_axis(data, axis=batch_axis, begin=int(div[i]), end=int(div[i + 1]))
                for i in range(num_slice)]
    return [data[int(div[i]):int(div[i + 1])] if i < num_slice - 1 else data[int(div[i]):size]
            for i in range(num_slice)]


def split_and_load(data, ctx_list, batch_axis=0, even_split=True):
    """Split ``data`` (an NDArray or array-like) and copy slice i onto ``ctx_list[i]``."""
    from .. import ndarray as nd
    if not isinstance(data, nd.NDArray):
        data = nd.array(data, ctx=ctx_list[0])
    if len(ctx_list) == 1:
        return [data.as_in_context(ctx_list[0])]
    slices = split_data(data, len(ctx_list), batch_axis, even_split)
    return [s.as_in_context(ctx) for s, ctx in zip(slices, ctx_list)]


def clip_global_norm(arrays, max_norm, check_isfinite=True):
    """Scale ``arrays`` in place so their joint L2 norm is at most ``max_norm``; returns the
    norm before scaling (a float, or an NDArray when ``check_isfinite`` is False, as MXNet)."""
    from .. import ndarray as nd
    if len(arrays) == 0:
        raise MXNetError("clip_global_norm: no arrays given")
    ctx = arrays[0].context

    def norm2(a):
        x = a.reshape((-1,))
        return nd.dot(x, x)
    squares = [norm2(a).as_in_context(ctx) for a in arrays]
    total = squares[0] if len(squares) == 1 else nd.add_n(*squares)
    total = nd.sqrt(total)
    if check_isfinite and not np.isfinite(total.asscalar()):
        warnings.warn(UserWarning("nan or inf is detected. Clipping results will be undefined."), stacklevel=2)
    scale = max_norm / (total + 1e-8)
    scale = nd.min(nd.concat(scale, nd.ones(1, ctx=ctx, dtype=scale.dtype), dim=0))
    for a in arrays:
        a *= scale.as_in_context(a.context)
    if check_isfinite:
        return total.asscalar()
    return total


def check_sha1(filename, sha1_hash):
    """True when the SHA-1 of ``filename``'s content is ``sha1_hash`` (a hex string; only as
    many leading hex digits as given are compared, as MXNet)."""
    sha1 = hashlib.sha1()
    with open(filename, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha1.update(chunk)
    digest = sha1.hexdigest()
    length = min(len(digest), len(sha1_hash))
    return digest[:length] == sha1_hash[:length]


def replace_file(src, dst):
    """Move ``src`` over ``dst`` atomically (``os.replace``)."""
    os.replace(src, dst)


def _download_target(url, path):
    if path is None:
        return url.split("/")[-1]
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        return os.path.join(path, url.split("/")[-1])
    return path


def download(url, path=None, overwrite=False, sha1_hash=None, retries=5, verify_ssl=True):
    """MXNet's ``download``, without the network: returns the local file name (``path``, or the
    URL's last component inside ``path`` when it is a folder) when that file exists, ``overwrite``
    is False and it matches ``sha1_hash`` if one is given; otherwise raises ``MXNetError`` naming
    the URL and the file to put there by hand. kiln never fetches from the network, so
    ``retries`` and ``verify_ssl`` (MXNet's transfer options) have nothing to configure."""
    fname = _download_target(url, path)
    if os.path.exists(fname) and not overwrite:
        if sha1_hash is None or check_sha1(fname, sha1_hash):
            return fname
        raise MXNetError("%s exists but its SHA-1 does not match %s, and kiln does not download files: fetch %s "
                         "and save it as %s" % (fname, sha1_hash, url, os.path.abspath(fname)))
    reason = "overwrite=True was given" if os.path.exists(fname) else "the file does not exist"
    raise MXNetError("kiln does not download files (%s for %s): fetch %s yourself and save it as %s"
                     % (reason, fname, url, os.path.abspath(fname)))


class HookHandle:
    """Handle of a registered forward (pre-)hook; ``detach()`` removes it."""

    def __init__(self):
        self._hooks_dict_ref = None
        self._id = None

    def attach(self, hooks_dict, hook):
        if self._hooks_dict_ref:
            raise MXNetError("The same handle cannot be attached twice.")
        self._id = id(hook)
        hooks_dict[self._id] = hook
        self._hooks_dict_ref = weakref.ref(hooks_dict)

    def detach(self):
        hooks_dict = self._hooks_dict_ref()
        if hooks_dict is not None and self._id in hooks_dict:
            del hooks_dict[self._id]

    def __getstate__(self):
        return (self._hooks_dict_ref(), self._id)

    def __setstate__(self, state):
        self._hooks_dict_ref = weakref.ref(state[0] if state[0] is not None else collections.OrderedDict())
        self._id = state[1]

    def __enter__(self):
        return self

    def __exit__(self, ptype, value, trace):
        self.detach()


def shape_is_known(shape):
    return shape is not None and all(d > 0 for d in shape)
