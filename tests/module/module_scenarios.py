"""Module API scenarios written against an ``mx`` passed in, so the same code runs on kiln (the
tests) and on MXNet 1.9.1 (mxnet_golden_recorder.py, which writes golden_mxnet.json).
Every scenario returns {name: plain JSON value}; arrays become nested lists."""
import logging
import os

import numpy as np


def _np(x):
    return np.asarray(x.asnumpy() if hasattr(x, "asnumpy") else x, dtype=np.float64).tolist()


def mlp(mx):
    data = mx.sym.Variable("data")
    net = mx.sym.FullyConnected(data, num_hidden=6, name="fc1")
    net = mx.sym.Activation(net, act_type="relu", name="relu1")
    net = mx.sym.FullyConnected(net, num_hidden=3, name="fc2")
    return mx.sym.SoftmaxOutput(net, name="softmax")


def mlp_params(mx):
    rs = np.random.RandomState(1)
    shapes = [("fc1_weight", (6, 5)), ("fc1_bias", (6,)), ("fc2_weight", (3, 6)), ("fc2_bias", (3,))]
    return {n: mx.nd.array(rs.uniform(-0.6, 0.6, s).astype(np.float32)) for n, s in shapes}


def dataset(n=24):
    rs = np.random.RandomState(2)
    x = rs.uniform(-1, 1, (n, 5)).astype(np.float32)
    y = rs.randint(0, 3, n).astype(np.float32)
    return x, y


def _params(mod):
    args, auxs = mod.get_params()
    out = {k: _np(v) for k, v in sorted(args.items())}
    out.update({"aux:" + k: _np(v) for k, v in sorted(auxs.items())})
    return out


def train_steps(mx, contexts, kvstore, workload=None, sizes=(8, 4, 8), update_on_kvstore=None):
    """Bind at batch 8, train with batch sizes ``sizes`` (an implicit reshape at 4), SGD + momentum."""
    old = os.environ.get("MXNET_UPDATE_ON_KVSTORE")
    if update_on_kvstore is not None:
        os.environ["MXNET_UPDATE_ON_KVSTORE"] = "1" if update_on_kvstore else "0"
    try:
        x, y = dataset()
        mod = mx.mod.Module(mlp(mx), context=contexts, work_load_list=workload)
        mod.bind(data_shapes=[("data", (8, 5))], label_shapes=[("softmax_label", (8,))])
        mod.init_params(arg_params=mlp_params(mx), aux_params={})
        mod.init_optimizer(kvstore=kvstore, optimizer="sgd",
                           optimizer_params={"learning_rate": 0.5, "momentum": 0.9, "wd": 0.01})
        res = {}
        start = 0
        for step, n in enumerate(sizes):
            batch = mx.io.DataBatch([mx.nd.array(x[start:start + n])], [mx.nd.array(y[start:start + n])])
            start += n
            mod.forward(batch, is_train=True)
            res["out%d" % step] = _np(mod.get_outputs()[0])
            mod.backward()
            if step == 0:
                res["grad0_fc1_weight"] = _np(sum(g.asnumpy() for g in mod._exec_group.grad_arrays[0]))
            mod.update()
        res["params"] = _params(mod)
        res["rescale_grad"] = float(mod._optimizer.rescale_grad)
        res["update_on_kvstore"] = bool(mod._update_on_kvstore)
        return res
    finally:
        if old is None:
            os.environ.pop("MXNET_UPDATE_ON_KVSTORE", None)
        else:
            os.environ["MXNET_UPDATE_ON_KVSTORE"] = old


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def fit_scenario(mx):
    """fit with eval_data (padded last batch), callbacks, then score / predict / iter_predict."""
    x, y = dataset()
    logger = logging.getLogger("module_scenarios.fit")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = _Collect()
    logger.addHandler(handler)
    try:
        train = mx.io.NDArrayIter(x[:12], y[:12], batch_size=4, shuffle=False, label_name="softmax_label")
        val = mx.io.NDArrayIter(x[12:22], y[12:22], batch_size=4, shuffle=False, label_name="softmax_label")
        mod = mx.mod.Module(mlp(mx), logger=logger)
        epochs, batches, evals = [], [], []
        mod.fit(train, eval_data=val, eval_metric="acc", validation_metric="ce",
                optimizer="sgd", optimizer_params=(("learning_rate", 0.3), ("momentum", 0.5)),
                arg_params=mlp_params(mx), num_epoch=3,
                epoch_end_callback=lambda e, s, a, au: epochs.append([e, _np(a["fc2_bias"])]),
                batch_end_callback=lambda p: batches.append([p.epoch, p.nbatch, p.eval_metric.get()[1]]),
                eval_end_callback=lambda p: evals.append([p.epoch, p.nbatch, p.eval_metric.get()[1]]))
        res = {"log": [line for line in handler.lines if "Time cost" not in line],
               "epochs": epochs, "batches": batches, "evals": evals, "params": _params(mod)}
        res["score"] = [[n, float(v)] for n, v in mod.score(val, ["acc", "ce"])]
        pred = mod.predict(val)
        res["predict"] = _np(pred)
        res["predict_num_batch"] = list(mod.predict(val, num_batch=1).shape)
        res["predict_list"] = [[list(o.shape) for o in b] for b in mod.predict(val, merge_batches=False)]
        res["predict_always_list"] = len(mod.predict(val, always_output_list=True))
        res["iter_predict"] = [[i, b.pad, list(o[0].shape)] for o, i, b in mod.iter_predict(val)]
        res["predict_ndarray"] = _np(mod.predict(mx.nd.array(x[:4])))
        return res
    finally:
        logger.removeHandler(handler)


def _bucket_sym_gen(mx):
    def sym_gen(key):
        data = mx.sym.Variable("data")  # (batch, key, 3)
        pooled = mx.sym.mean(data, axis=1)
        fc = mx.sym.FullyConnected(pooled * float(key), num_hidden=4, name="fc")
        return mx.sym.SoftmaxOutput(fc, name="softmax"), ("data",), ("softmax_label",)
    return sym_gen


def _bucket_params(mx):
    rs = np.random.RandomState(3)
    return {"fc_weight": mx.nd.array(rs.uniform(-0.5, 0.5, (4, 3)).astype(np.float32)),
            "fc_bias": mx.nd.array(rs.uniform(-0.1, 0.1, (4,)).astype(np.float32))}


def _bucket_batches(mx, keys, n=4):
    rs = np.random.RandomState(4)
    out = []
    for key in keys:
        d = rs.uniform(-1, 1, (n, key, 3)).astype(np.float32)
        lab = rs.randint(0, 4, n).astype(np.float32)
        out.append(mx.io.DataBatch([mx.nd.array(d)], [mx.nd.array(lab)], bucket_key=key,
                                   provide_data=[mx.io.DataDesc("data", (n, key, 3))],
                                   provide_label=[mx.io.DataDesc("softmax_label", (n,))]))
    return out


def bucketing_scenario(mx):
    mod = mx.mod.BucketingModule(_bucket_sym_gen(mx), default_bucket_key=3)
    mod.bind(data_shapes=[("data", (4, 3, 3))], label_shapes=[("softmax_label", (4,))])
    mod.init_params(arg_params=_bucket_params(mx), aux_params={})
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 0.2, "momentum": 0.9})
    res = {}
    for step, batch in enumerate(_bucket_batches(mx, [3, 2, 3, 2, 5])):
        mod.forward(batch, is_train=True)
        res["out%d" % step] = _np(mod.get_outputs()[0])
        mod.backward()
        mod.update()
    res["params"] = _params(mod)
    res["buckets"] = sorted(int(k) for k in mod._buckets)
    return res


class BucketIter:
    """A minimal bucketing iterator (DataIter interface; batches carry bucket_key)."""

    def __init__(self, mx, keys, n=4):
        self._mx = mx
        self.batches = _bucket_batches(mx, keys, n)
        self.batch_size = n
        self.default_bucket_key = max(keys)
        self.provide_data = [mx.io.DataDesc("data", (n, self.default_bucket_key, 3))]
        self.provide_label = [mx.io.DataDesc("softmax_label", (n,))]
        self._i = 0

    def __iter__(self):
        return self

    def reset(self):
        self._i = 0

    def __next__(self):
        if self._i >= len(self.batches):
            raise StopIteration
        self._i += 1
        return self.batches[self._i - 1]

    next = __next__


def bucketing_fit_scenario(mx):
    it = BucketIter(mx, [5, 2, 3, 2])
    mod = mx.mod.BucketingModule(_bucket_sym_gen(mx), default_bucket_key=it.default_bucket_key)
    mod.fit(it, num_epoch=2, arg_params=_bucket_params(mx), eval_metric="acc",
            optimizer_params=(("learning_rate", 0.5),))
    return {"params": _params(mod), "score": [[n, float(v)] for n, v in mod.score(it, "ce")]}


def sequential_scenario(mx):
    data = mx.sym.Variable("data")
    net1 = mx.sym.Activation(mx.sym.FullyConnected(data, num_hidden=6, name="fc1"), act_type="relu", name="relu1")
    net2 = mx.sym.SoftmaxOutput(mx.sym.FullyConnected(mx.sym.Variable("data"), num_hidden=3, name="fc2"),
                                name="softmax")
    seq = mx.mod.SequentialModule()
    seq.add(mx.mod.Module(net1, label_names=None)).add(mx.mod.Module(net2), take_labels=True, auto_wiring=True)
    x, y = dataset()
    seq.bind(data_shapes=[("data", (8, 5))], label_shapes=[("softmax_label", (8,))])
    seq.init_params(arg_params=mlp_params(mx), aux_params={})
    seq.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 0.5, "momentum": 0.9})
    res = {"output_shapes": [[n, list(s)] for n, s in seq.output_shapes]}
    metric = mx.metric.create("acc")
    for step in range(3):
        batch = mx.io.DataBatch([mx.nd.array(x[8 * step:8 * step + 8])], [mx.nd.array(y[8 * step:8 * step + 8])])
        seq.forward(batch, is_train=True)
        seq.update_metric(metric, batch.label)
        seq.backward()
        seq.update()
    res["out"] = _np(seq.get_outputs()[0])
    res["params"] = _params(seq)
    res["metric"] = list(metric.get())
    return res


def python_loss_scenario(mx):
    data = mx.sym.Variable("data")
    net = mx.sym.FullyConnected(data, num_hidden=3, name="fc")

    def grad_func(scores, labels):
        return mx.nd.softmax(scores) - mx.nd.one_hot(labels, 3)

    seq = mx.mod.SequentialModule()
    seq.add(mx.mod.Module(net, label_names=None))
    seq.add(mx.mod.PythonLossModule(grad_func=grad_func), take_labels=True, auto_wiring=True)
    x, y = dataset()
    seq.bind(data_shapes=[("data", (8, 5))], label_shapes=[("softmax_label", (8,))])
    rs = np.random.RandomState(5)
    seq.init_params(arg_params={"fc_weight": mx.nd.array(rs.uniform(-0.5, 0.5, (3, 5)).astype(np.float32)),
                                "fc_bias": mx.nd.zeros((3,))}, aux_params={})
    seq.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 0.4})
    for step in range(2):
        batch = mx.io.DataBatch([mx.nd.array(x[8 * step:8 * step + 8])], [mx.nd.array(y[8 * step:8 * step + 8])])
        seq.forward(batch, is_train=True)
        seq.backward()
        seq.update()
    return {"params": _params(seq), "out": _np(seq.get_outputs()[0]),
            "output_names": list(seq.output_names)}


def input_grads_scenario(mx):
    """inputs_need_grad over two contexts, explicit out_grads for a non-loss output, grad_req dict."""
    data = mx.sym.Variable("data")
    net = mx.sym.FullyConnected(data, num_hidden=3, name="fc")
    mod = mx.mod.Module(net, label_names=None, context=[mx.cpu(0), mx.cpu(1)])
    mod.bind(data_shapes=[("data", (4, 5))], inputs_need_grad=True, grad_req={"fc_bias": "null"})
    rs = np.random.RandomState(6)
    mod.init_params(arg_params={"fc_weight": mx.nd.array(rs.uniform(-1, 1, (3, 5)).astype(np.float32)),
                                "fc_bias": mx.nd.array(rs.uniform(-1, 1, (3,)).astype(np.float32))})
    x, _ = dataset()
    mod.forward(mx.io.DataBatch([mx.nd.array(x[:4])]), is_train=True)
    head = mx.nd.array(rs.uniform(-1, 1, (4, 3)).astype(np.float32))
    mod.backward([head])
    grads = mod._exec_group.grad_arrays
    return {"out": _np(mod.get_outputs()[0]), "input_grad": _np(mod.get_input_grads()[0]),
            "unmerged": [[list(a.shape) for a in per] for per in mod.get_outputs(merge_multi_context=False)],
            "fc_weight_grad": _np(grads[0][0].asnumpy() + grads[0][1].asnumpy()),
            "fc_bias_grad_is_none": grads[1][0] is None}


SCENARIOS = {
    "train_1ctx": lambda mx: train_steps(mx, [mx.cpu(0)], "local"),
    "train_2ctx_local": lambda mx: train_steps(mx, [mx.cpu(0), mx.cpu(1)], "local"),
    "train_2ctx_none": lambda mx: train_steps(mx, [mx.cpu(0), mx.cpu(1)], None),
    "train_2ctx_device_no_kv_update": lambda mx: train_steps(mx, [mx.cpu(0), mx.cpu(1)], "device",
                                                             update_on_kvstore=False),
    "train_2ctx_workload": lambda mx: train_steps(mx, [mx.cpu(0), mx.cpu(1)], "local", workload=[1, 3]),
    "fit": fit_scenario,
    "bucketing": bucketing_scenario,
    "bucketing_fit": bucketing_fit_scenario,
    "sequential": sequential_scenario,
    "python_loss": python_loss_scenario,
    "input_grads": input_grads_scenario,
}


def run_all(mx):
    return {name: fn(mx) for name, fn in SCENARIOS.items()}
