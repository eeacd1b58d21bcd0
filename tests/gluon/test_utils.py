"""gluon.utils: split_data, split_and_load, clip_global_norm."""
import numpy as np
import pytest

import kiln as mx
from kiln.gluon import utils


def test_split_data():
    x = mx.nd.arange(24).reshape((6, 4))
    parts = utils.split_data(x, 3)
    assert [p.shape for p in parts] == [(2, 4)] * 3
    np.testing.assert_array_equal(np.concatenate([p.asnumpy() for p in parts]), x.asnumpy())
    cols = utils.split_data(x, 2, batch_axis=1)
    np.testing.assert_array_equal(cols[1].asnumpy(), x.asnumpy()[:, 2:])
    y = mx.nd.arange(14).reshape((7, 2))
    assert [p.shape for p in utils.split_data(y, 3, even_split=False)] == [(3, 2), (2, 2), (2, 2)]
    with pytest.raises(ValueError):
        utils.split_data(y, 3)
    assert len(utils.split_data(y, 1)) == 1


def test_split_and_load():
    x = mx.nd.arange(8).reshape((4, 2))
    parts = utils.split_and_load(x, [mx.cpu(0), mx.cpu(1)])
    assert [p.context for p in parts] == [mx.cpu(0), mx.cpu(1)]
    np.testing.assert_array_equal(parts[1].asnumpy(), [[4, 5], [6, 7]])
    one = utils.split_and_load(np.ones((3, 2), np.float32), [mx.cpu(0)])
    assert one[0].shape == (3, 2) and one[0].dtype == np.float32


def test_clip_global_norm():
    a, b = mx.nd.array([[3.0, 4.0]]), mx.nd.array([12.0])
    total = utils.clip_global_norm([a, b], max_norm=1.0)
    assert isinstance(total, np.float32) and total == pytest.approx(13.0)  # asscalar(), as MXNet
    np.testing.assert_allclose(a.asnumpy(), [[3 / 13, 4 / 13]], rtol=1e-5)
    np.testing.assert_allclose(b.asnumpy(), [12 / 13], rtol=1e-5)
    c = mx.nd.array([0.3, 0.4])
    assert utils.clip_global_norm([c], max_norm=5.0) == pytest.approx(0.5)
    np.testing.assert_allclose(c.asnumpy(), [0.3, 0.4], rtol=1e-6)
    d = [mx.nd.array([[3.0, 4.0]])]
    total = utils.clip_global_norm(d, max_norm=2.5, check_isfinite=False)
    assert isinstance(total, mx.nd.NDArray) and total.asscalar() == pytest.approx(5.0)
    np.testing.assert_allclose(d[0].asnumpy(), [[1.5, 2.0]], rtol=1e-5)
