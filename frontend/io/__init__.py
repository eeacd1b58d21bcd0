"""``mx.io``: MXNet 1.9.1's data iterators (NDArrayIter, CSVIter, MNISTIter, ...)."""
from . import io, utils
from .io import (CSVIter, DataBatch, DataDesc, DataIter, ImageDetRecordIter, ImageRecordInt8Iter,
                 ImageRecordIter, ImageRecordIter_v1, ImageRecordUInt8Iter, ImageRecordUInt8Iter_v1,
                 LibSVMIter, MNISTIter, MXDataIter, NDArrayIter, PrefetchingIter, ResizeIter)
from .utils import _init_data, _getdata_by_idx, _has_instance

__all__ = ["io", "utils", "CSVIter", "DataBatch", "DataDesc", "DataIter", "ImageDetRecordIter",
           "ImageRecordInt8Iter", "ImageRecordIter", "ImageRecordIter_v1", "ImageRecordUInt8Iter",
           "ImageRecordUInt8Iter_v1", "LibSVMIter", "MNISTIter", "MXDataIter", "NDArrayIter",
           "PrefetchingIter", "ResizeIter", "_init_data", "_getdata_by_idx", "_has_instance"]
