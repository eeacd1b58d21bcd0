"""Operator declarations. Importing this package registers every operator."""
from . import registry  # noqa: F401
from . import elemwise_unary, elemwise_binary, reduce, linalg, layout, nn, shape_ops, indexing, activations  # noqa: F401,E501
from . import conv, norm, sort, upsampling  # noqa: F401
from . import sampling  # noqa: F401  (GridGenerator, BilinearSampler, SpatialTransformer)
from . import ctc  # noqa: F401  (CTCLoss: its kernel is a hand-written LLVM stage)
from . import random  # noqa: F401  (random operators; Dropout's sampling uses its generator)
from . import optimizer  # noqa: F401  (optimiser update rules: sgd_update, adam_update...)
from . import creation  # noqa: F401  (_zeros, _arange...: array creation inside graphs)
from . import rnn  # noqa: F401  (RNN: the fused recurrent layer, unrolled into GEMMs and gate arithmetic)
from . import sequence  # noqa: F401  (SequenceLast, SequenceReverse)
from . import vision, misc  # noqa: F401  (MXNet 1.x legacy/vision operators: LRN, Crop, ROIAlign...)
from .registry import all_names, all_ops, exists, get  # noqa: F401
