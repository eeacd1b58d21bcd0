"""Operator declarations. Importing this package registers every operator."""
from . import registry  # noqa: F401
from . import elemwise_unary, elemwise_binary, reduce, linalg, layout, nn  # noqa: F401
from .registry import all_names, all_ops, exists, get  # noqa: F401
