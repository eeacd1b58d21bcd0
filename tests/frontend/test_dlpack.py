"""DLPack: zero-copy exchange with numpy (and torch where installed)."""
import numpy as np
import pytest

import kiln as mx
from kiln.base import MXNetError


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "uint8", "float16", "int8"])
def test_round_trip_shares_memory(dtype):
    x = mx.nd.array(np.arange(6).reshape(2, 3), dtype=dtype)
    y = mx.nd.from_dlpack(x.to_dlpack_for_write())
    assert y.shape == (2, 3) and y.dtype == np.dtype(dtype)
    y[0, 0] = 9
    assert x.asnumpy()[0, 0] == 9
    np.testing.assert_array_equal((y + 1).asnumpy(), x.asnumpy() + 1)


def test_numpy_reads_kiln_memory_and_kiln_writes_numpy_memory():
    x = mx.nd.ones((3,)) * 2  # queued: export waits for it
    np.testing.assert_array_equal(np.from_dlpack(x), [2, 2, 2])
    a = np.zeros(4, dtype=np.float32)
    y = mx.nd.from_dlpack(a)
    mx.nd.elemwise_add(y, mx.nd.ones((4,)), out=y)
    mx.nd.waitall()
    np.testing.assert_array_equal(a, [1, 1, 1, 1])


def test_zero_size_and_scalar_shapes():
    assert mx.nd.from_dlpack(np.zeros((0, 3), np.float32)).shape == (0, 3)
    assert mx.nd.from_dlpack(np.array(5.0, np.float32)).shape == ()


def test_capsules_are_used_once_and_strided_memory_is_refused():
    cap = mx.nd.ones((2,)).to_dlpack_for_read()
    mx.nd.from_dlpack(cap)
    with pytest.raises(MXNetError, match="once"):
        mx.nd.from_dlpack(cap)
    with pytest.raises(MXNetError, match="row-major"):
        mx.nd.from_dlpack(np.arange(12.0).reshape(3, 4)[:, ::2])
    with pytest.raises(MXNetError, match="capsule"):
        mx.nd.from_dlpack(object())


def test_torch_interop():
    torch = pytest.importorskip("torch")
    x = mx.nd.array([[1.0, 2.0]])
    t = torch.from_dlpack(x)
    t.mul_(3)
    np.testing.assert_array_equal(x.asnumpy(), [[3, 6]])
    y = mx.nd.from_dlpack(torch.arange(4, dtype=torch.float32))
    np.testing.assert_array_equal(y.asnumpy(), [0, 1, 2, 3])
