"""mx.callback and mx.model checkpoints; log lines are MXNet 1.9.1's, recorded with a fake clock."""
from __future__ import annotations

import json
import logging
import math
import os

import numpy as np
import pytest

import kiln as mx
from kiln.model import BatchEndParam


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("kiln.callback.time.time", lambda: now[0])
    return now


def _messages(caplog):
    return [(r.name, r.levelname, r.getMessage()) for r in caplog.records]


def _acc_ce():
    m = mx.metric.create(["acc", "ce"])
    m.update([mx.nd.array([1, 0])], [mx.nd.array([[0.2, 0.8], [0.4, 0.6]])])
    return m


def test_batch_end_param():
    p = BatchEndParam(epoch=1, nbatch=2, eval_metric=None, locals=None)
    assert repr(p) == "BatchEndParams(epoch=1, nbatch=2, eval_metric=None, locals=None)"
    assert mx.model.BatchEndParam is BatchEndParam and p._fields == ("epoch", "nbatch", "eval_metric", "locals")


@pytest.mark.parametrize("auto_reset,want", [
    (True, ["Epoch[1] Batch [0-2]\tSpeed: 8.00 samples/sec\taccuracy=0.500000\tcross-entropy=0.569717",
            "Epoch[1] Batch [2-4]\tSpeed: 8.00 samples/sec\taccuracy=0.500000\tcross-entropy=0.569717",
            "Epoch[2] Batch [0-2]\tSpeed: 8.00 samples/sec\taccuracy=nan\tcross-entropy=nan"]),
    (False, ["Epoch[1] Batch [0-2]\tSpeed: 8.00 samples/sec\taccuracy=0.500000\tcross-entropy=0.569717",
             "Epoch[1] Batch [0-4]\tSpeed: 8.00 samples/sec\taccuracy=0.500000\tcross-entropy=0.569717",
             "Epoch[2] Batch [0-2]\tSpeed: 8.00 samples/sec\taccuracy=0.500000\tcross-entropy=0.569717"]),
])
def test_speedometer(caplog, clock, auto_reset, want):
    caplog.set_level(logging.INFO)
    metric = _acc_ce()
    sp = mx.callback.Speedometer(batch_size=4, frequent=2, auto_reset=auto_reset)
    for nb in range(6):
        clock[0] += 0.5
        sp(BatchEndParam(epoch=1, nbatch=nb, eval_metric=metric, locals=None))
        if nb == 3:
            metric.update([mx.nd.array([1, 0])], [mx.nd.array([[0.2, 0.8], [0.4, 0.6]])])
    # nbatch going down means a new epoch: the clock restarts and nothing is logged.
    sp(BatchEndParam(epoch=2, nbatch=0, eval_metric=metric, locals=None))
    clock[0] += 1
    sp(BatchEndParam(epoch=2, nbatch=2, eval_metric=metric, locals=None))
    assert _messages(caplog) == [("root", "INFO", w) for w in want]
    # auto_reset clears the local statistics after each line.
    assert math.isnan(metric.get()[1][0]) == auto_reset


def test_speedometer_without_metric_and_zero_time(caplog, clock):
    caplog.set_level(logging.INFO)
    sp = mx.callback.Speedometer(3, 1)
    assert (sp.batch_size, sp.frequent, sp.auto_reset) == (3, 1, True)
    sp(BatchEndParam(0, 1, None, None))
    clock[0] += 2
    sp(BatchEndParam(0, 2, None, None))
    sp(BatchEndParam(0, 3, None, None))
    assert [m for _, _, m in _messages(caplog)] == ["Iter[0] Batch [2]\tSpeed: 1.50 samples/sec",
                                                    "Iter[0] Batch [3]\tSpeed: inf samples/sec"]


def test_progress_bar(caplog):
    caplog.set_level(logging.INFO)
    pb = mx.callback.ProgressBar(total=3, length=10)
    for i in range(4):
        pb(BatchEndParam(0, i, None, None))
    assert [m for _, _, m in _messages(caplog)] == ["[----------] 0%\r", "[===-------] 34%\r",
                                                    "[=======---] 67%\r", "[==========] 100%\r"]
    assert mx.callback.ProgressBar(5).bar_len == 80


def test_log_train_metric_and_validation(caplog):
    caplog.set_level(logging.INFO)
    cb = mx.callback.log_train_metric(2, auto_reset=True)
    m = mx.metric.Accuracy()
    m.update([mx.nd.array([1, 0, 1])], [mx.nd.array([1, 1, 1])])
    for i in range(3):
        cb(BatchEndParam(3, i, m, None))
    cb(BatchEndParam(3, 4, None, None))
    val = mx.callback.LogValidationMetricsCallback()
    val(BatchEndParam(5, 0, _acc_ce(), None))
    val(BatchEndParam(5, 0, None, None))
    assert [m for _, _, m in _messages(caplog)] == [
        "Iter[3] Batch[0] Train-accuracy=0.666667", "Iter[3] Batch[2] Train-accuracy=nan",
        "Epoch[5] Validation-accuracy=0.500000", "Epoch[5] Validation-cross-entropy=0.569717"]


def _model():
    x = mx.sym.Variable("data")
    net = mx.sym.BatchNorm(mx.sym.FullyConnected(x, num_hidden=3, name="fc1"), name="bn1")
    arg = {"fc1_weight": mx.nd.array(np.arange(6).reshape(3, 2)), "fc1_bias": mx.nd.array([1, 2, 3]),
           "bn1_gamma": mx.nd.ones(3), "bn1_beta": mx.nd.zeros(3)}
    aux = {"bn1_moving_mean": mx.nd.array([.5, .5, .5]), "bn1_moving_var": mx.nd.array([2, 2, 2])}
    return net, arg, aux


def test_checkpoint_round_trip(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    net, arg, aux = _model()
    prefix = str(tmp_path / "net")
    mx.model.save_checkpoint(prefix, 7, net, arg, aux)
    assert sorted(os.listdir(tmp_path)) == ["net-0007.params", "net-symbol.json"]
    assert _messages(caplog) == [("root", "INFO", 'Saved checkpoint to "%s-0007.params"' % prefix)]
    assert sorted(mx.nd.load(prefix + "-0007.params")) == [
        "arg:bn1_beta", "arg:bn1_gamma", "arg:fc1_bias", "arg:fc1_weight", "aux:bn1_moving_mean",
        "aux:bn1_moving_var"]
    assert json.loads(open(prefix + "-symbol.json").read()) == json.loads(net.tojson())
    sym, arg2, aux2 = mx.model.load_checkpoint(prefix, 7)
    assert sym.list_arguments() == net.list_arguments()
    assert sym.list_auxiliary_states() == ["bn1_moving_mean", "bn1_moving_var"]
    assert sorted(arg2) == sorted(arg) and sorted(aux2) == sorted(aux)
    for k in arg:
        np.testing.assert_array_equal(arg2[k].asnumpy(), arg[k].asnumpy())
    for k in aux:
        np.testing.assert_array_equal(aux2[k].asnumpy(), aux[k].asnumpy())


def test_checkpoint_without_symbol_and_load_params(tmp_path, caplog):
    _, arg, aux = _model()
    prefix = str(tmp_path / "p")
    mx.model.save_checkpoint(prefix, 12, None, arg, {})
    assert os.listdir(tmp_path) == ["p-0012.params"]
    a, b = mx.model.load_params(prefix, 12)
    assert sorted(a) == sorted(arg) and b == {}
    # Keys without arg:/aux: are ignored; an empty file warns.
    mx.nd.save(prefix + "-0001.params", {"arg:w": mx.nd.ones(2), "other:z": mx.nd.ones(1)})
    a, b = mx.model.load_params(prefix, 1)
    assert list(a) == ["w"] and b == {}
    mx.nd.save(prefix + "-0002.params", {})
    caplog.set_level(logging.INFO)
    assert mx.model.load_params(prefix, 2) == ({}, {})
    assert _messages(caplog) == [("root", "WARNING", "Params file '%s-0002.params' is empty" % prefix)]
    with pytest.raises(FileNotFoundError):
        mx.model.load_checkpoint(prefix, 3)


def test_do_checkpoint_period(tmp_path):
    net, arg, aux = _model()
    prefix = str(tmp_path / "cb")
    cb = mx.callback.do_checkpoint(prefix, period=2)
    for epoch in range(5):
        cb(epoch, net, arg, aux)
    assert sorted(os.listdir(tmp_path)) == ["cb-0002.params", "cb-0004.params", "cb-symbol.json"]
    every = mx.callback.do_checkpoint(str(tmp_path / "e"), period=0)  # period < 1 means every epoch
    every(0, None, arg, aux)
    assert os.path.exists(str(tmp_path / "e-0001.params"))


def test_module_checkpoint():
    calls = []

    class FakeModule:
        def save_checkpoint(self, prefix, epoch, save_optimizer_states):
            calls.append((prefix, epoch, save_optimizer_states))

    cb = mx.callback.module_checkpoint(FakeModule(), "m", period=3, save_optimizer_states=True)
    for epoch in range(7):
        cb(epoch)
    assert calls == [("m", 3, True), ("m", 6, True)]
