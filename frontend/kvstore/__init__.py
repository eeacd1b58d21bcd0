"""``mx.kv`` / ``mx.kvstore``: key-value stores for data-parallel training."""
from .base import KVStoreBase, TestStore  # noqa: F401
from .kvstore import KVStore, create  # noqa: F401
