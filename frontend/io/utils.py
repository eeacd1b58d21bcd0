"""Helpers of ``NDArrayIter``: turn its inputs into sorted ``(name, NDArray)`` lists and
reorder them, keeping MXNet 1.9.1's conversions (numpy inputs become float32 NDArrays)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..ndarray import NDArray, array


def _is_sparse(value):
    """scipy.sparse matrices and sparse-typed arrays: kiln has no CSR storage."""
    if getattr(value, "stype", "default") != "default":
        return True
    return type(value).__module__.startswith("scipy.sparse")


def _init_data(data, allow_empty, default_name):
    """Canonical form of NDArrayIter's ``data``/``label``: a list of ``(name, NDArray)`` sorted by
    name, as MXNet (so dict inputs come out in key order, and ``_10_data`` sorts before ``_2_data``)."""
    if data is None:
        if not allow_empty:
            raise ValueError("NDArrayIter: data must not be None")
        data = []
    if isinstance(data, (np.ndarray, NDArray)) or _is_sparse(data):
        data = [data]
    if isinstance(data, list):
        if not allow_empty and not data:
            raise ValueError("NDArrayIter: data must not be an empty list")
        if len(data) == 1:
            data = OrderedDict([(default_name, data[0])])
        else:
            data = OrderedDict([("_%d_%s" % (i, default_name), d) for i, d in enumerate(data)])
    if not isinstance(data, dict):
        raise TypeError("Input must be NDArray, numpy.ndarray, a list of them or dict with them as values "
                        "(got %s for %r)" % (type(data).__name__, default_name))
    out = {}
    for key, value in data.items():
        if _is_sparse(value):
            raise NotImplementedError(
                "NDArrayIter: input %r is a sparse (CSR) matrix; kiln has no CSRNDArray storage, "
                "pass a dense numpy array or NDArray instead" % (key,))
        if isinstance(value, NDArray):
            out[key] = value
            continue
        try:
            out[key] = array(value)
        except Exception as err:
            raise TypeError("Invalid type '%s' for %s, should be NDArray or numpy.ndarray"
                            % (type(value), key)) from err
    return sorted(out.items())


def _has_instance(data, dtype):
    """Whether any array of an ``_init_data`` list is a ``dtype``."""
    return any(isinstance(arr, dtype) for _, arr in data)


def _getdata_by_idx(data, idx):
    """Rows ``idx`` of every array. As MXNet, the result is rebuilt with ``nd.array`` and so becomes
    float32 whatever the input dtype."""
    return [(name, array(np.asarray(arr)[idx], arr.context)) for name, arr in data]
