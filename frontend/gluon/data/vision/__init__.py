"""``mx.gluon.data.vision``: MNIST/FashionMNIST/CIFAR datasets read from local files, and image transforms."""
from .datasets import *  # noqa: F401,F403
from . import datasets  # noqa: F401
from . import transforms  # noqa: F401
