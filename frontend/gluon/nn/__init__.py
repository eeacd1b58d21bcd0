"""kiln.gluon.nn: neural-network layers."""
from ..block import Block, HybridBlock, SymbolBlock  # noqa: F401
from .basic_layers import *  # noqa: F401,F403
from .activations import Activation, LeakyReLU, PReLU, ELU, SELU, GELU, Swish  # noqa: F401
from .conv_layers import *  # noqa: F401,F403
