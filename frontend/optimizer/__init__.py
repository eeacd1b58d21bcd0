"""``mx.optimizer``: MXNet 1.9's optimisers, updater and registry.

MXNet 1.9.1 has no ``mx.optimizer.AdamW`` (only the ``adamw_update`` contrib operator), so
neither does kiln.
"""
from .optimizer import (SGD, NAG, Adam, RMSProp, AdaGrad, AdaDelta, Adamax, Nadam, Ftrl, Signum,  # noqa: F401
                        LAMB, FTML, DCASGD, SGLD, ccSGD, Test, Optimizer, Updater, create, get_updater, register)
from .optimizer import __all__  # noqa: F401
