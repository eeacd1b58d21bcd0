"""Module API numbers against MXNet 1.9.1: every scenario of module_scenarios.py run on kiln and
compared with golden_mxnet.json (recorded by mxnet_golden_recorder.py with real MXNet)."""
import json
import os

import numpy as np
import pytest

import kiln as mx

from . import module_scenarios

GOLDEN = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_mxnet.json")))


def _compare(want, got, path):
    if isinstance(want, dict):
        assert sorted(want) == sorted(got), path
        for k in want:
            _compare(want[k], got[k], "%s/%s" % (path, k))
    elif isinstance(want, str) or isinstance(want, bool) or want is None:
        assert want == got, path
    elif isinstance(want, (int, float)):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5), path
    else:
        assert isinstance(got, list) and len(want) == len(got), path
        try:
            w = np.array(want, dtype=np.float64)
        except (TypeError, ValueError):
            w = None
        if w is not None and w.dtype != object:
            np.testing.assert_allclose(np.array(got, dtype=np.float64), w, rtol=1e-4, atol=1e-5, err_msg=path)
        else:
            for i, (a, b) in enumerate(zip(want, got)):
                _compare(a, b, "%s[%d]" % (path, i))


@pytest.mark.parametrize("name", sorted(module_scenarios.SCENARIOS))
def test_against_mxnet(name):
    got = json.loads(json.dumps(module_scenarios.SCENARIOS[name](mx)))
    _compare(GOLDEN[name], got, name)


def test_fit_log_lines_are_mxnets():
    log = GOLDEN["fit"]["log"]
    assert log[0].startswith("Epoch[0] Train-accuracy=")
    assert any(line.startswith("Epoch[2] Validation-cross-entropy=") for line in log)


def test_two_contexts_match_one_context():
    one = module_scenarios.train_steps(mx, [mx.cpu(0)], "local")
    for kv, upd in (("local", None), ("device", False), ("device", True)):
        two = module_scenarios.train_steps(mx, [mx.cpu(0), mx.cpu(1)], kv, update_on_kvstore=upd)
        for k in one["params"]:
            np.testing.assert_allclose(two["params"][k], one["params"][k], rtol=1e-5, atol=1e-6, err_msg=(kv, k))
