"""Module API behaviour on kiln: checkpoints, reshapes, sharing, callbacks, monitor, errors."""
import logging
import os

import numpy as np
import pytest

import kiln as mx

from .module_scenarios import dataset, mlp, mlp_params


def _module(ctx=None, bs=8, **kw):
    mod = mx.mod.Module(mlp(mx), context=ctx or mx.cpu(), **kw)
    mod.bind(data_shapes=[("data", (bs, 5))], label_shapes=[("softmax_label", (bs,))])
    mod.init_params(arg_params=mlp_params(mx), aux_params={})
    return mod


def _batch(i, bs=8):
    x, y = dataset(48)
    return mx.io.DataBatch([mx.nd.array(x[i * bs:(i + 1) * bs])], [mx.nd.array(y[i * bs:(i + 1) * bs])])


def _step(mod, i):
    mod.forward_backward(_batch(i))
    mod.update()


def _params(mod):
    return {k: v.asnumpy() for k, v in mod.get_params()[0].items()}


def test_names_shapes_and_mod_alias():
    assert mx.mod is mx.module
    mod = _module()
    assert mod.data_names == ["data"] and mod.label_names == ["softmax_label"]
    assert mod.output_names == ["softmax_output"]
    assert [(d.name, d.shape) for d in mod.data_shapes] == [("data", (8, 5))]
    assert mod.output_shapes == [("softmax_output", (8, 3))]
    assert mod.symbol is not None and mod.binded and mod.params_initialized


def test_checkpoint_round_trip_with_optimizer_states(tmp_path):
    opt = {"learning_rate": 0.3, "momentum": 0.9}
    ref = _module()
    ref.init_optimizer(optimizer="sgd", optimizer_params=opt)
    for i in range(4):
        _step(ref, i)

    mod = _module()
    mod.init_optimizer(optimizer="sgd", optimizer_params=opt)
    for i in range(2):
        _step(mod, i)
    prefix = str(tmp_path / "mlp")
    mod.save_checkpoint(prefix, 2, save_optimizer_states=True)
    for suffix in ("-symbol.json", "-0002.params", "-0002.states"):
        assert os.path.exists(prefix + suffix)
    assert open(prefix + "-0002.states", "rb").read(8) == b"KILNUPD1"

    loaded = mx.mod.Module.load(prefix, 2, load_optimizer_states=True)
    loaded.bind(data_shapes=[("data", (8, 5))], label_shapes=[("softmax_label", (8,))])
    loaded.init_optimizer(optimizer="sgd", optimizer_params=opt)
    for i in range(2, 4):
        _step(loaded, i)
    want, got = _params(ref), _params(loaded)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)

    # without the momentum states the continuation differs
    fresh = mx.mod.Module.load(prefix, 2)
    fresh.bind(data_shapes=[("data", (8, 5))], label_shapes=[("softmax_label", (8,))])
    fresh.init_optimizer(optimizer="sgd", optimizer_params=opt)
    for i in range(2, 4):
        _step(fresh, i)
    assert not np.allclose(_params(fresh)["fc1_weight"], want["fc1_weight"])


def test_save_load_params_and_optimizer_states_two_contexts(tmp_path):
    # params are loaded before init_optimizer: a store keeps its own copy of the weights (as MXNet)
    opt = {"learning_rate": 0.2, "momentum": 0.9}
    mod = _module(ctx=[mx.cpu(0), mx.cpu(1)])
    mod.init_optimizer(kvstore="device", optimizer="sgd", optimizer_params=opt)
    _step(mod, 0)
    mod.save_params(str(tmp_path / "p.params"))
    mod.save_optimizer_states(str(tmp_path / "s.states"))
    other = _module(ctx=[mx.cpu(0), mx.cpu(1)])
    other.load_params(str(tmp_path / "p.params"))
    other.init_optimizer(kvstore="device", optimizer="sgd", optimizer_params=opt)
    other.load_optimizer_states(str(tmp_path / "s.states"))
    _step(mod, 1)
    _step(other, 1)
    for k, v in _params(mod).items():
        np.testing.assert_allclose(_params(other)[k], v, rtol=1e-5, atol=1e-6)


def test_reshape_keeps_parameters_and_reuses_executors():
    mod = _module()
    mod.init_optimizer(optimizer="sgd")
    group = mod._exec_group
    first = group.execs[0]
    w = group.param_arrays[0][0]
    mod.reshape(data_shapes=[("data", (3, 5))], label_shapes=[("softmax_label", (3,))])
    assert [d.shape for d in mod.data_shapes] == [(3, 5)]
    assert group.execs[0] is not first and group.execs[0].arg_dict["fc1_weight"] is w
    x, y = dataset(3)
    mod.forward(mx.io.DataBatch([mx.nd.array(x)], [mx.nd.array(y)]), is_train=True)
    assert mod.get_outputs()[0].shape == (3, 3)
    mod.backward()
    mod.update()
    mod.forward(_batch(0))  # implicit reshape back: the first executor again
    assert group.execs[0] is first
    assert mod.output_shapes == [("softmax_output", (8, 3))]


def test_fit_logging_callbacks_and_checkpoints(tmp_path, caplog):
    x, y = dataset(24)
    train = mx.io.NDArrayIter(x[:16], y[:16], batch_size=4, label_name="softmax_label")
    val = mx.io.NDArrayIter(x[16:], y[16:], batch_size=3, label_name="softmax_label")
    mod = mx.mod.Module(mlp(mx))
    prefix = str(tmp_path / "fit")
    ends, batches, eval_batches = [], [], []
    with caplog.at_level(logging.INFO):
        mod.fit(train, eval_data=val, num_epoch=2, arg_params=mlp_params(mx),
                epoch_end_callback=[mx.callback.do_checkpoint(prefix),
                                    lambda epoch, sym, arg, aux: ends.append((epoch, sorted(arg)))],
                batch_end_callback=lambda p: batches.append((p.epoch, p.nbatch)),
                eval_batch_end_callback=lambda p: eval_batches.append(p.nbatch),
                optimizer_params={"learning_rate": 0.1})
    msgs = [r.getMessage() for r in caplog.records]
    for epoch in range(2):
        assert any(m.startswith("Epoch[%d] Train-accuracy=" % epoch) for m in msgs)
        assert any(m.startswith("Epoch[%d] Time cost=" % epoch) for m in msgs)
        assert any(m.startswith("Epoch[%d] Validation-accuracy=" % epoch) for m in msgs)
    line = next(m for m in msgs if m.startswith("Epoch[1] Time cost="))
    assert len(line.split("=")[1].split(".")[1]) == 3  # %.3f
    assert ends == [(0, ["fc1_bias", "fc1_weight", "fc2_bias", "fc2_weight"])] * 1 + \
        [(1, ["fc1_bias", "fc1_weight", "fc2_bias", "fc2_weight"])]
    assert batches == [(e, b) for e in range(2) for b in range(4)]
    assert eval_batches == [0, 1, 2] * 2
    assert os.path.exists(prefix + "-symbol.json") and os.path.exists(prefix + "-0002.params")
    _, arg, _ = mx.model.load_checkpoint(prefix, 2)
    np.testing.assert_allclose(arg["fc1_weight"].asnumpy(), mod.get_params()[0]["fc1_weight"].asnumpy())


def test_fit_speedometer_progressbar_and_monitor(caplog):
    x, y = dataset(24)
    train = mx.io.NDArrayIter(x, y, batch_size=4, label_name="softmax_label")
    mod = mx.mod.Module(mlp(mx), context=[mx.cpu(0), mx.cpu(1)])
    mon = mx.monitor.Monitor(2, pattern="fc2.*|softmax.*", sort=True)
    with caplog.at_level(logging.INFO):
        mod.fit(train, num_epoch=1, monitor=mon, kvstore="local",
                batch_end_callback=[mx.callback.Speedometer(4, 2), mx.callback.ProgressBar(6)])
    msgs = [r.getMessage() for r in caplog.records]
    assert any("Speed:" in m and "samples/sec" in m for m in msgs)
    stats = [m for m in msgs if m.startswith("Batch:")]
    names = {m.split()[2] for m in stats}
    assert {"fc2_weight", "fc2_bias", "softmax_label", "softmax_output"} <= names
    assert "fc1_weight" not in names
    assert len(mon.exes) == 2  # one view per context


def test_predict_padding_and_iter_predict():
    x, _ = dataset(10)
    mod = mx.mod.Module(mx.sym.softmax(mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=3, name="fc")),
                        label_names=None, context=[mx.cpu(0), mx.cpu(1)])
    mod.bind(data_shapes=[("data", (4, 5))], for_training=False)
    mod.init_params(mx.init.Xavier())
    it = mx.io.NDArrayIter(x, batch_size=4, last_batch_handle="pad")
    pred = mod.predict(it)
    assert pred.shape == (10, 3)
    w, b = (mod.get_params()[0][k].asnumpy() for k in ("fc_weight", "fc_bias"))
    logits = x.dot(w.T) + b
    want = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(pred.asnumpy(), want / want.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert [[o.shape for o in outs] for outs in mod.predict(it, merge_batches=False)] == [[(4, 3)], [(4, 3)], [(2, 3)]]
    assert [(i, b.pad, o[0].shape) for o, i, b in mod.iter_predict(it)] == [(0, 0, (4, 3)), (1, 0, (4, 3)),
                                                                            (2, 2, (2, 3))]
    assert isinstance(mod.predict(it, always_output_list=True), list)
    assert mod.predict(it, num_batch=1).shape == (4, 3)
    np.testing.assert_allclose(mod.predict(x[:4]).asnumpy(), pred.asnumpy()[:4], rtol=1e-6)


def test_bucketing_buckets_share_parameters():
    from .module_scenarios import _bucket_batches, _bucket_params, _bucket_sym_gen
    mod = mx.mod.BucketingModule(_bucket_sym_gen(mx), default_bucket_key=3)
    mod.bind(data_shapes=[("data", (4, 3, 3))], label_shapes=[("softmax_label", (4,))])
    mod.init_params(arg_params=_bucket_params(mx))
    mod.init_optimizer(optimizer_params={"learning_rate": 0.1})
    for batch in _bucket_batches(mx, [2, 3]):
        mod.forward_backward(batch)
        mod.update()
    a, b = mod._buckets[3], mod._buckets[2]
    assert a._exec_group.param_arrays[0][0] is b._exec_group.param_arrays[0][0]
    assert a._optimizer is b._optimizer and b.optimizer_initialized
    assert mod.data_shapes[0].shape == (4, 3, 3)
    np.testing.assert_allclose(mod.get_params()[0]["fc_weight"].asnumpy(),
                               a._exec_group.param_arrays[0][0].asnumpy())


def test_fixed_params_grad_req_and_states():
    mod = _module(fixed_param_names=["fc1_weight"])
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 1.0})
    before = _params(mod)
    _step(mod, 0)
    after = _params(mod)
    np.testing.assert_array_equal(after["fc1_weight"], before["fc1_weight"])
    assert not np.allclose(after["fc2_weight"], before["fc2_weight"])
    assert mod._exec_group.grad_req["fc1_weight"] == "null"

    data, state = mx.sym.Variable("data"), mx.sym.Variable("state")
    net = mx.sym.FullyConnected(data, num_hidden=2, name="fc") + state
    smod = mx.mod.Module(net, label_names=None, state_names=["state"])
    smod.bind(data_shapes=[("data", (2, 3))], for_training=False)
    smod.init_params(mx.init.Zero())
    smod.set_states(value=1.5)
    smod.forward(mx.io.DataBatch([mx.nd.ones((2, 3))]))
    np.testing.assert_allclose(smod.get_outputs()[0].asnumpy(), np.full((2, 2), 1.5))
    smod.set_states(states=[[mx.nd.full((2, 2), 2.0)]])
    assert smod.get_states(merge_multi_context=False)[0][0].asnumpy().tolist() == [[2.0, 2.0]] * 2


def test_grad_req_add_accumulates():
    mod = mx.mod.Module(mlp(mx))
    mod.bind(data_shapes=[("data", (8, 5))], label_shapes=[("softmax_label", (8,))], grad_req="add")
    mod.init_params(arg_params=mlp_params(mx))
    mod.forward_backward(_batch(0))
    g1 = mod._exec_group.grad_arrays[0][0].asnumpy()
    mod.forward_backward(_batch(0))
    np.testing.assert_allclose(mod._exec_group.grad_arrays[0][0].asnumpy(), 2 * g1, rtol=1e-5)


def test_warnings_and_rebind(caplog):
    mod = _module()
    with caplog.at_level(logging.WARNING):
        mod.bind(data_shapes=[("data", (8, 5))], label_shapes=[("softmax_label", (8,))])
    assert "Already bound, ignoring bind()" in caplog.text
    with pytest.warns(UserWarning, match="already initialized"):
        mod.init_params()
    mod.init_optimizer()
    with caplog.at_level(logging.WARNING):
        mod.init_optimizer()
    assert "optimizer already initialized" in caplog.text
    with pytest.warns(UserWarning, match="rescale_grad"):
        mod.init_optimizer(optimizer=mx.optimizer.SGD(learning_rate=0.1), force_init=True)
    w = _params(mod)["fc1_weight"]
    mod.bind(data_shapes=[("data", (2, 5))], label_shapes=[("softmax_label", (2,))], force_rebind=True)
    np.testing.assert_array_equal(mod._exec_group.param_arrays[0][0].asnumpy(), w)
    assert mod._exec_group.batch_size == 2


def test_error_messages():
    mod = mx.mod.Module(mlp(mx))
    with pytest.raises(AssertionError, match="bound"):
        mod.forward(_batch(0))
    with pytest.raises(ValueError, match="input with name 'dat' is not found"):
        mx.mod.Module(mlp(mx), data_names=["dat"])
    with pytest.warns(UserWarning, match="label_names"):
        mx.mod.Module(mlp(mx), label_names=["lbl"])
    with pytest.raises(ValueError, match="don't match names specified by data_names"):
        mod.bind(data_shapes=[("x", (8, 5))], label_shapes=[("softmax_label", (8,))])
    mod.bind(data_shapes=[("data", (8, 5))], label_shapes=[("softmax_label", (8,))])
    with pytest.raises(AssertionError):
        mod.forward(_batch(0))  # parameters not initialized
    with pytest.raises(RuntimeError, match="fc1_bias is not presented"):
        mod.init_params(arg_params={"fc1_weight": mx.nd.zeros((6, 5))})
    mod.init_params(arg_params={"fc1_weight": mx.nd.zeros((6, 5))}, allow_missing=True,
                    initializer=mx.init.Constant(0.5), force_init=True)
    assert (_params(mod)["fc2_weight"] == 0.5).all() and (_params(mod)["fc1_weight"] == 0).all()
    mod.set_params(dict(mlp_params(mx), extra=mx.nd.zeros((1,))), {})  # extras are ignored here, as MXNet
    with pytest.raises(ValueError, match="not in the arguments"):  # ... but not when copied directly
        mod.set_params(dict(mlp_params(mx), extra=mx.nd.zeros((1,))), {}, allow_missing=True)
    mod.set_params(dict(mlp_params(mx), extra=mx.nd.zeros((1,))), {}, allow_missing=True, allow_extra=True)
    with pytest.raises(AssertionError):
        mod.update()  # no optimizer
    with pytest.raises(NotImplementedError):
        mx.mod.Module(mlp(mx), group2ctxs={"dev1": mx.cpu(1)})


def test_python_loss_module_alone_and_sequential_input_grads():
    loss = mx.mod.PythonLossModule(grad_func=lambda s, lab: s - 1)
    loss.bind(data_shapes=[("data", (2, 3))], label_shapes=[("softmax_label", (2,))])
    assert loss.output_shapes == [("pyloss_output", (2, 3))]
    loss.forward(mx.io.DataBatch([mx.nd.ones((2, 3))], [mx.nd.zeros((2,))]), is_train=True)
    loss.backward()
    assert loss.get_input_grads()[0].asnumpy().tolist() == [[0.0] * 3] * 2
    with pytest.raises(NotImplementedError):
        mx.mod.PythonLossModule().backward() if False else mx.mod.PythonLossModule()._backward_impl()
