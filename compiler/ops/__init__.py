"""Operator declarations. Importing this package registers every operator."""
from . import registry  # noqa: F401
from . import elemwise_unary, elemwise_binary, reduce, linalg, layout, nn, shape_ops, indexing, activations  # noqa: F401,E501
from . import conv, norm, sort, upsampling  # noqa: F401
from . import random  # noqa: F401  (random operators; Dropout's sampling uses its generator)
from . import optimizer  # noqa: F401  (optimiser update rules: sgd_update, adam_update...)
from .registry import all_names, all_ops, exists, get  # noqa: F401
