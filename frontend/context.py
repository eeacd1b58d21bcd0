"""Devices: ``mx.cpu()``, ``mx.gpu()``, and the default-context stack."""
import threading


class Context:
    devtype2str = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}
    devstr2type = {v: k for k, v in devtype2str.items()}
    _local = threading.local()

    def __init__(self, device_type, device_id=0):
        if isinstance(device_type, Context):
            device_type, device_id = device_type.device_type, device_type.device_id
        if isinstance(device_type, int):
            device_type = self.devtype2str[device_type]
        if device_type not in self.devstr2type:
            raise ValueError("unknown device type %r" % (device_type,))
        self.device_type = device_type
        self.device_id = int(device_id)
        self._old = []

    @property
    def device_typeid(self):
        return self.devstr2type[self.device_type]

    def __eq__(self, other):
        return isinstance(other, Context) and (self.device_type, self.device_id) == (other.device_type, other.device_id)

    def __hash__(self):
        return hash((self.device_type, self.device_id))

    def __repr__(self):
        return "%s(%d)" % (self.device_type, self.device_id)

    __str__ = __repr__

    def __enter__(self):
        self._old.append(current_context())
        Context._local.value = self
        return self

    def __exit__(self, *exc):
        Context._local.value = self._old.pop()

    @staticmethod
    def default_ctx():
        return current_context()


def cpu(device_id=0):
    return Context("cpu", device_id)


def cpu_pinned(device_id=0):
    return Context("cpu_pinned", device_id)


def gpu(device_id=0):
    return Context("gpu", device_id)


def num_gpus():
    """GPUs this process can use through the CUDA driver (0 without a driver, a GPU or
    kiln's ``cuda`` extra; never an error, as in MXNet)."""
    from .runtime.cuda import device_count
    return device_count()


def current_context():
    return getattr(Context._local, "value", None) or Context("cpu", 0)
