"""``mx.optimizer``: MXNet 1.9's optimisers, updater and registry, and MXNet 2.0's AdamW."""
from .optimizer import (SGD, NAG, Adam, AdamW, RMSProp, AdaGrad, AdaDelta, Adamax, Nadam, Ftrl, Signum,  # noqa: F401
                        LAMB, FTML, DCASGD, SGLD, ccSGD, Test, Optimizer, Updater, create, get_updater, register)
from .optimizer import __all__  # noqa: F401
