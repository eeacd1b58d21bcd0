"""mx.metric against values recorded with Apache MXNet 1.9.1 (numpy 1.23) and against plain numpy."""
from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import numpy as np
import pytest

import kiln as mx

A = mx.nd.array
NAN = float("nan")


def _data():
    # Same stream as the script that recorded the MXNet values below.
    rs = np.random.RandomState(0)
    p = rs.rand(6, 4).astype("float32")
    p /= p.sum(1, keepdims=True)
    rl = rs.rand(5, 3).astype("float32")
    rp = rs.rand(5, 3).astype("float32")
    return p, rl, rp


P, RL, RP = _data()
L = np.array([0, 3, 1, 2, 2, 1], dtype="float32")
BL = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype="float32")
BP = np.array([[.3, .7], [.6, .4], [.8, .2], [.1, .9], [.2, .8], [.9, .1], [.4, .6], [.7, .3]], dtype="float32")


def _same(got, want, rel=1e-6):
    """Compare nested (name, value) results; NaN equals NaN."""
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), (got, want)
        for g, w in zip(got, want):
            _same(g, w, rel)
    elif isinstance(want, float):
        assert isinstance(got, (float, int)) and not isinstance(got, bool), (got, want)
        if math.isnan(want):
            assert math.isnan(got), (got, want)
        else:
            assert got == pytest.approx(want, rel=rel, abs=1e-12), (got, want)
    else:
        assert got == want, (got, want)


def _upd(metric, labels, preds):
    metric.update(labels, preds)
    return metric


# ---- Accuracy ----

def test_accuracy_golden_and_numpy():
    m = _upd(mx.metric.Accuracy(), [A(L)], [A(P)])
    _same(m.get(), ("accuracy", 0.16666666666666666))
    assert m.get()[1] == pytest.approx(float((P.argmax(1) == L).mean()))
    assert isinstance(m.get()[1], float)
    _same(_upd(mx.metric.Accuracy(), [A(L)], [A(np.array([0, 3, 1, 1, 2, 0.]))]).get(),
          ("accuracy", 0.6666666666666666))
    # A bare NDArray is wrapped in a list.
    _same(_upd(mx.metric.Accuracy(), A(L), A(P)).get(), ("accuracy", 0.16666666666666666))


def test_accuracy_axis():
    m = _upd(mx.metric.Accuracy(axis=0), [A(np.array([0, 3, 1, 2, 2, 1.]))], [A(P.T.copy())])
    _same(m.get(), ("accuracy", float((P.T.argmax(0) == np.array([0, 3, 1, 2, 2, 1])).mean())))


def test_accuracy_local_and_global():
    m = _upd(mx.metric.Accuracy(), [A(L)], [A(P)])
    m.reset_local()
    _same(m.get(), ("accuracy", NAN))
    _same(m.get_global(), ("accuracy", 0.16666666666666666))
    _same(m.get_global_name_value(), [("accuracy", 0.16666666666666666)])
    m.update([A(L[:2])], [A(P[:2])])
    _same(m.get(), ("accuracy", 0.5))
    _same(m.get_global(), ("accuracy", 0.25))
    assert (m.num_inst, m.global_num_inst, m.sum_metric) == (2, 8, 1.0)
    m.reset()
    _same(m.get_global(), ("accuracy", NAN))


def test_accuracy_shape_errors_and_empty():
    with pytest.raises(ValueError, match="Shape of labels 2 does not match shape of predictions 1"):
        mx.metric.Accuracy().update([A(L), A(L)], [A(P)])
    with pytest.raises(ValueError, match="Shape of labels 4 does not match shape of predictions 6"):
        mx.metric.Accuracy().update([A(L[:4])], [A(P)])
    m = _upd(mx.metric.Accuracy(), [], [])
    assert m.num_inst == 0 and math.isnan(m.get()[1])


def test_accuracy_str_config_and_name_value():
    m = _upd(mx.metric.Accuracy(), [A(L)], [A(P)])
    assert str(m) == "EvalMetric: {'accuracy': 0.16666666666666666}"
    _same(m.get_name_value(), [("accuracy", 0.16666666666666666)])
    assert mx.metric.Accuracy(axis=2, name="a", output_names=["o"], label_names=["l"]).get_config() == {
        "axis": 2, "metric": "Accuracy", "name": "a", "output_names": ["o"], "label_names": ["l"]}


# ---- TopKAccuracy ----

def test_top_k():
    _same(_upd(mx.metric.TopKAccuracy(top_k=3), [A(L)], [A(P)]).get(), ("top_k_accuracy_3", 0.6666666666666666))
    top3 = np.argsort(-P, axis=1)[:, :3]
    assert (top3 == L[:, None]).any(1).mean() == pytest.approx(0.6666666666666666)
    with pytest.raises(AssertionError, match="Please use Accuracy"):
        mx.metric.TopKAccuracy(top_k=1)
    m = _upd(mx.metric.TopKAccuracy(top_k=2), [A(L)], [A(P)])
    m.update([A(L)], [A(P)])
    m.reset_local()
    m.update([A(L[:3])], [A(P[:3])])
    _same(m.get(), ("top_k_accuracy_2", 0.3333333333333333))
    _same(m.get_global(), ("top_k_accuracy_2", 0.3333333333333333))
    assert m.get_config() == {"top_k": 2, "metric": "TopKAccuracy", "name": "top_k_accuracy_2",
                              "output_names": None, "label_names": None}


def test_top_k_one_dim_counts_only_locally():
    # MXNet 1.9.1 quirk: 1-D predictions add to the local sum only.
    m = _upd(mx.metric.TopKAccuracy(top_k=2), [A(np.array([0., 3, 1]))], [A(np.array([0.2, 0.9, 0.5]))])
    _same(m.get(), ("top_k_accuracy_2", 0.6666666666666666))
    _same(m.get_global(), ("top_k_accuracy_2", 0.0))


# ---- F1 / MCC ----

def _binary_sequence(metric):
    out = []
    metric.update([A(BL[:5])], [A(BP[:5])])
    out += [metric.get(), metric.get_global()]
    metric.update([A(BL[5:])], [A(BP[5:])])
    out += [metric.get(), metric.get_global()]
    metric.reset_local()
    out += [metric.get(), metric.get_global()]
    metric.update([A(BL[:3])], [A(BP[:3])])
    out += [metric.get(), metric.get_global()]
    return out


@pytest.mark.parametrize("average,want", [
    ("macro", [0.6666666666666666, 0.6666666666666666, 0.8333333333333333, 0.8333333333333333,
               NAN, 0.8333333333333333, 0.6666666666666666, 0.7777777777777777]),
    ("micro", [0.6666666666666666, 0.6666666666666666, 0.75, 0.75,
               NAN, 0.75, 0.6666666666666666, 0.7272727272727272]),
])
def test_f1(average, want):
    m = mx.metric.F1(average=average)
    _same(_binary_sequence(m), [("f1", w) for w in want])
    assert m.get_config() == {"metric": "F1", "name": "f1", "output_names": None, "label_names": None}


def test_f1_numpy_and_multi_output():
    m = _upd(mx.metric.F1(), [A(BL[:5])], [A(BP[:5])])
    pred = BP[:5].argmax(1)
    tp = ((pred == 1) & (BL[:5] == 1)).sum()
    prec, rec = tp / (pred == 1).sum(), tp / (BL[:5] == 1).sum()
    assert m.get()[1] == pytest.approx(2 * prec * rec / (prec + rec))
    _same(_upd(mx.metric.F1(), [A(BL[:4]), A(BL[4:])], [A(BP[:4]), A(BP[4:])]).get(), ("f1", 0.75))
    with pytest.raises(ValueError, match="only supports binary classification"):
        mx.metric.F1().update([A(L)], [A(P)])


@pytest.mark.parametrize("average,want", [
    ("macro", [0.16666666666666666, 0.16666666666666666, 0.5833333333333334, 0.5833333333333334,
               NAN, 0.5833333333333334, 0.5, 0.5555555555555556]),
    ("micro", [0.16666666666666666, 0.16666666666666666, 0.5, 0.5, NAN, 0.5, 0.5, 0.46666666666666673]),
])
def test_mcc(average, want):
    _same(_binary_sequence(mx.metric.MCC(average=average)), [("mcc", w) for w in want])


def test_mcc_constant_prediction_is_zero():
    _same(_upd(mx.metric.MCC(), [A(np.ones(4))], [A(np.array([[0., 1]] * 4))]).get(), ("mcc", 0.0))


# ---- Perplexity ----

def test_perplexity():
    m = _upd(mx.metric.Perplexity(ignore_label=None), [A(L)], [A(P)])
    _same(m.get(), ("perplexity", 5.341464765834764))
    want = math.exp(-np.log(P[np.arange(6), L.astype(int)].astype(np.float64)).mean())
    assert m.get()[1] == pytest.approx(want, rel=1e-6)
    _same(_upd(mx.metric.Perplexity(ignore_label=2), [A(L)], [A(P)]).get(), ("perplexity", 4.198638108808544))
    # -1 is clipped to class 0 by pick, then ignored.
    _same(_upd(mx.metric.Perplexity(ignore_label=-1), [A(np.array([0, -1, 3, 1.]))], [A(P[:4])]).get(),
          ("perplexity", 3.4072142006412585))
    # Out-of-range labels are clipped (-1 -> 0, 7 -> 3), as nd.pick does.
    _same(_upd(mx.metric.Perplexity(ignore_label=None), [A(np.array([0, -1, 7, 1.]))], [A(P[:4])]).get(),
          ("perplexity", 3.8685656906200934))
    _same(_upd(mx.metric.Perplexity(ignore_label=None), [A(np.array([0., 1]))],
               [A(np.array([[0., 1], [1, 0]]))]).get(), ("perplexity", 9999993660.802519), rel=1e-5)
    _same(_upd(mx.metric.Perplexity(ignore_label=None, axis=0), [A(np.array([1, 0, 3, 2.]))],
               [A(P[:4].T.copy())]).get(), ("perplexity", 6.879180009801576))


def test_perplexity_global_config_and_errors():
    m = _upd(mx.metric.Perplexity(ignore_label=None), [A(L)], [A(P)])
    m.reset_local()
    _same([m.get(), m.get_global()], [("perplexity", NAN), ("perplexity", 5.341464765834764)])
    m.update([A(L[:2])], [A(P[:2])])
    _same([m.get(), m.get_global()], [("perplexity", 3.438146991723797), ("perplexity", 4.7843879295885925)])
    assert mx.metric.Perplexity(ignore_label=3, axis=0).get_config() == {
        "ignore_label": 3, "metric": "Perplexity", "name": "perplexity", "output_names": None, "label_names": None}
    with pytest.raises(AssertionError, match=r"shape mismatch: \(3,\) vs. \(6, 4\)"):
        mx.metric.Perplexity(ignore_label=None).update([A(L[:3])], [A(P)])
    with pytest.raises(AssertionError):
        mx.metric.Perplexity(ignore_label=None).update([A(L)], [A(P), A(P)])


# ---- regression ----

@pytest.mark.parametrize("name,want", [
    ("mae", [0.3618375360965729, 0.3286331295967102, 0.30987462401390076, 0.35578568279743195]),
    ("mse", [0.16478759050369263, 0.12752526998519897, 0.14145852625370026, 0.15073901414871216]),
    ("rmse", [0.40594038367271423, 0.3571068048477173, 0.3761097192764282, 0.3878285437822342]),
])
def test_regression(name, want):
    got = [_upd(mx.metric.create(name), [A(RL)], [A(RP)]).get(),
           _upd(mx.metric.create(name), [A(RL[:, 0])], [A(RP[:, 0])]).get(),
           _upd(mx.metric.create(name), [A(RL[:, 0])], [A(RP)]).get(),  # (N,1) broadcasts against (N,3)
           _upd(mx.metric.create(name), [A(RL), A(RL[:2])], [A(RP), A(RP[:2])]).get()]
    _same(got, [(name, w) for w in want])
    d = RL.astype(np.float64) - RP
    ref = {"mae": np.abs(d).mean(), "mse": (d ** 2).mean(), "rmse": np.sqrt((d ** 2).mean())}[name]
    assert got[0][1] == pytest.approx(ref, rel=1e-6)
    assert mx.metric.create(name).get_config() == {"metric": name.upper(), "name": name,
                                                   "output_names": None, "label_names": None}


# ---- cross entropy / NLL / Pearson / PCC / Loss ----

def test_cross_entropy_and_nll():
    ce = _upd(mx.metric.CrossEntropy(), [A(L)], [A(P)])
    _same(ce.get(), ("cross-entropy", 1.6754999160766602))
    assert ce.get()[1] == pytest.approx(-np.log(P[np.arange(6), L.astype(int)]).mean(), rel=1e-6)
    _same(_upd(mx.metric.CrossEntropy(eps=0.5), [A(L)], [A(P)]).get(), ("cross-entropy", 0.33068084716796875))
    _same(_upd(mx.metric.CrossEntropy(), [A(np.array([0.]))], [A(np.array([[0., 1]]))]).get(),
          ("cross-entropy", 27.63102149963379))
    _same(_upd(mx.metric.NegativeLogLikelihood(), [A(L)], [A(P)]).get(), ("nll-loss", 1.6754999160766602))
    with pytest.raises(AssertionError):
        mx.metric.CrossEntropy().update([A(L[:3])], [A(P)])
    assert mx.metric.CrossEntropy().get_config() == {"eps": 1e-12, "metric": "CrossEntropy",
                                                     "name": "cross-entropy", "output_names": None,
                                                     "label_names": None}


@pytest.mark.parametrize("average,want", [("macro", [-0.21380097731208023, -0.21380097731208023]),
                                          ("micro", [-0.14313510967741674, 0.0])])
def test_pearson(average, want):
    m = mx.metric.create("pearsonr", average=average)
    m.update([A(RL)], [A(RP)])
    m.update([A(RL[:3, :2])], [A(RP[:3, :2] * 2)])
    _same([m.get(), m.get_global()], [("pearsonr", w) for w in want])
    m.reset_local()
    _same(m.get(), ("pearsonr", NAN))


def test_pearson_single_batch_and_shape_check():
    m = _upd(mx.metric.PearsonCorrelation(), [A(RL)], [A(RP)])
    _same(m.get(), ("pearsonr", -0.15633931643110405))
    assert m.get()[1] == pytest.approx(np.corrcoef(RL.ravel(), RP.ravel())[0, 1], rel=1e-6)
    with pytest.raises(ValueError, match=r"\(5, 3\) does not match shape of predictions \(5, 2\)"):
        mx.metric.PearsonCorrelation().update([A(RL)], [A(RP[:, :2])])


def test_pcc_grows_confusion_matrix():
    m = _upd(mx.metric.PCC(), [A(L)], [A(P)])
    _same([m.get(), m.get_global()], [("pcc", -0.08006407690254357)] * 2)
    assert m.k == 4
    m.update([A(np.array([0, 1, 1, 5.]))], [A(np.array([0, 1, 0, 5.]))])
    _same([m.get(), m.get_global()], [("pcc", 0.2362022561101096)] * 2)
    assert m.k == 6
    m.reset_local()
    _same([m.get(), m.get_global()], [("pcc", NAN), ("pcc", 0.2362022561101096)])
    _same(_upd(mx.metric.PCC(), [A(BL)], [A(BP)]).get(), ("pcc", 0.5))


def test_loss_torch_caffe():
    m = mx.metric.Loss()
    m.update(None, [A(RL), A(RP[:2])])
    m.update(None, A(RL[0]))
    _same(m.get(), ("loss", 0.4774931917587916))
    assert m.num_inst == 24
    assert m.get()[1] == pytest.approx((RL.sum() + RP[:2].sum() + RL[0].sum()) / 24, rel=1e-6)
    m.reset_local()
    _same([m.get(), m.get_global()], [("loss", NAN), ("loss", 0.4774931917587916)])
    _same(_upd(mx.metric.Torch(), None, [A(RL)]).get(), ("torch", 0.5103536287943522))
    _same(_upd(mx.metric.create("caffe"), None, [A(RL)]).get(), ("caffe", 0.5103536287943522))
    assert mx.metric.Torch().get_config()["metric"] == "Torch"


# ---- Composite, create, registry ----

def test_composite():
    m = mx.metric.CompositeEvalMetric(metrics=["acc", mx.metric.CrossEntropy()])
    m.add("f1")
    m.add(mx.metric.TopKAccuracy(top_k=2))
    names = ["accuracy", "cross-entropy", "f1", "top_k_accuracy_2"]
    _same(m.get(), (names, [NAN] * 4))
    m.update([A(BL)], [A(BP)])
    _same(m.get(), (names, [0.75, 0.6455747485160828, 0.75, 1.0]))
    _same(m.get_name_value(), list(zip(names, [0.75, 0.6455747485160828, 0.75, 1.0])))
    m.reset_local()
    m.update([A(BL[:3])], [A(BP[:3])])
    _same(m.get(), (names, [0.6666666666666666, 0.825646162033081, 0.6666666666666666, 1.0]))
    _same(m.get_global(), (names, [0.7272727272727273, 0.6946851340207186, 0.7083333333333333, 1.0]))
    assert m.get_metric(1).name == "cross-entropy"
    out_of_range = m.get_metric(7)  # returned, not raised, as in MXNet 1.9.1
    assert isinstance(out_of_range, ValueError) and str(out_of_range) == "Metric index 7 is out of range 0 and 4"
    assert str(m) == ("EvalMetric: {'accuracy': 0.6666666666666666, 'cross-entropy': 0.825646162033081, "
                      "'f1': 0.6666666666666666, 'top_k_accuracy_2': 1.0}")
    config = m.get_config()
    assert config["metric"] == "CompositeEvalMetric" and [c["metric"] for c in config["metrics"]] == [
        "Accuracy", "CrossEntropy", "F1", "TopKAccuracy"]
    m.reset()
    _same(m.get_global(), (names, [NAN] * 4))


def test_composite_config_round_trip():
    config = mx.metric.CompositeEvalMetric(["acc", mx.metric.TopKAccuracy(top_k=3)]).get_config()
    again = mx.metric.create(config)
    assert type(again) is mx.metric.CompositeEvalMetric
    # MXNet re-appends the _k suffix to the saved name.
    assert [c.name for c in again.metrics] == ["accuracy", "top_k_accuracy_3_3"]


def test_create_by_name_alias_json_dict():
    expect = {"acc": "Accuracy", "Accuracy": "Accuracy", "f1": "F1", "mcc": "MCC", "mae": "MAE", "mse": "MSE",
              "rmse": "RMSE", "ce": "CrossEntropy", "crossentropy": "CrossEntropy",
              "nll_loss": "NegativeLogLikelihood", "negativeloglikelihood": "NegativeLogLikelihood",
              "pearsonr": "PearsonCorrelation", "pearsoncorrelation": "PearsonCorrelation", "pcc": "PCC",
              "loss": "Loss", "torch": "Torch", "caffe": "Caffe", "composite": "CompositeEvalMetric",
              "compositeevalmetric": "CompositeEvalMetric"}
    for name, cls in expect.items():
        assert type(mx.metric.create(name)).__name__ == cls, name
    assert mx.metric.create("top_k_acc", top_k=4).name == "top_k_accuracy_4"
    assert mx.metric.create("top_k_accuracy", 3).name == "top_k_accuracy_3"
    assert mx.metric.create("perplexity", -1).ignore_label == -1
    assert mx.metric.create('["top_k_accuracy", {"top_k": 3}]').name == "top_k_accuracy_3"
    assert mx.metric.create('{"metric": "acc", "name": "x"}').name == "x"
    assert mx.metric.create({"metric": "acc", "axis": 0}).axis == 0
    inst = mx.metric.Accuracy()
    assert mx.metric.create(inst) is inst


def test_create_errors():
    with pytest.raises(AssertionError, match="nope is not registered"):
        mx.metric.create("nope")
    with pytest.raises(AssertionError, match="metric must be of string type"):
        mx.metric.create(3)
    with pytest.raises(AssertionError, match="already an instance"):
        mx.metric.create(mx.metric.Accuracy(), 3)
    with pytest.raises(AssertionError, match="Can only register subclass of EvalMetric"):
        mx.metric.register(int)


def test_create_lists_and_callables():
    _same(mx.metric.create(["mae", "mse"], name="z").get(), (["z", "z"], [NAN, NAN]))
    _same(mx.metric.create([["acc", "mae"], "mse"]).get(), (["accuracy", "mae", "mse"], [NAN] * 3))
    c = mx.metric.create(["acc", "ce"])
    assert type(c) is mx.metric.CompositeEvalMetric and c.get()[0] == ["accuracy", "cross-entropy"]
    # Anything callable becomes a CustomMetric, classes included (as in MXNet).
    made = mx.metric.create(mx.metric.Accuracy)
    assert type(made) is mx.metric.CustomMetric and made.name == "Accuracy"


def test_register_and_alias():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")

        @mx.metric.register
        @mx.metric.alias("kiln_test_alias")
        class KilnTestMetric(mx.metric.EvalMetric):
            def __init__(self, name="ktm", **kw):
                super().__init__(name, **kw)

            def update(self, labels, preds):
                self.sum_metric += 2
                self.num_inst += 1

    m = mx.metric.create("kilntestmetric")
    assert type(mx.metric.create("kiln_test_alias")) is KilnTestMetric
    m.update(None, None)
    # No has_global_stats: the global getters fall back to the local ones.
    _same([m.get(), m.get_global(), m.get_global_name_value()], [("ktm", 2.0), ("ktm", 2.0), [("ktm", 2.0)]])
    assert m.get_config() == {"metric": "KilnTestMetric", "name": "ktm", "output_names": None, "label_names": None}
    with pytest.warns(UserWarning, match="overriding existing metric"):
        mx.metric.register(KilnTestMetric)


def test_base_class():
    with pytest.raises(NotImplementedError):
        mx.metric.EvalMetric("x").update([], [])
    m = mx.metric.EvalMetric("x")
    _same([m.get(), m.get_global(), m.get_name_value()], [("x", NAN), ("x", NAN), [("x", NAN)]])


# ---- CustomMetric / np ----

def _fe(label, pred):
    return np.abs(label - pred).sum()


def _fe2(label, pred):
    return (float(np.abs(label - pred).sum()), label.size)


def test_custom_metric():
    _same(_upd(mx.metric.create(_fe), [A(RL), A(RL)], [A(RP), A(RP)]).get(), ("_fe", 5.427563190460205))
    m = _upd(mx.metric.CustomMetric(_fe2), [A(RL)], [A(RP)])
    _same(m.get(), ("_fe2", 0.36183754603068036))
    m.reset_local()
    _same([m.get(), m.get_global()], [("_fe2", NAN), ("_fe2", 0.36183754603068036)])
    _same(_upd(mx.metric.CustomMetric(_fe, allow_extra_outputs=True), [A(RL)], [A(RP), A(RP)]).get(),
          ("_fe", 5.427563190460205))
    with pytest.raises(ValueError, match="Shape of labels 1 does not match shape of predictions 2"):
        mx.metric.CustomMetric(_fe).update([A(RL)], [A(RP), A(RP)])
    with pytest.raises(NotImplementedError, match="CustomMetric cannot be serialized"):
        mx.metric.CustomMetric(_fe).get_config()
    seen = []
    mx.metric.CustomMetric(lambda l, p: seen.append((type(l), type(p))) or 0.0).update([A(RL)], [A(RP)])
    assert seen == [(np.ndarray, np.ndarray)]


def test_np_helper():
    _same(_upd(mx.metric.np(_fe, name="q"), [A(RL)], [A(RP)]).get(), ("q", 5.427563190460205))
    assert mx.metric.np(_fe).name == "_fe"
    assert mx.metric.np(lambda l, p: 1.0).name == "custom(<lambda>)"


# ---- update_dict, check_label_shapes ----

def test_update_dict():
    m = mx.metric.Accuracy(output_names=["b"], label_names=["lb"])
    m.update_dict(OrderedDict([("la", A(L[:2])), ("lb", A(L))]), OrderedDict([("a", A(P[:2])), ("b", A(P))]))
    _same(m.get(), ("accuracy", 0.16666666666666666))
    m2 = mx.metric.Accuracy()
    m2.update_dict(OrderedDict([("la", A(L))]), OrderedDict([("a", A(P))]))
    _same(m2.get(), ("accuracy", 0.16666666666666666))
    c = mx.metric.CompositeEvalMetric(
        ["acc", mx.metric.Accuracy(name="a2", output_names=["b"], label_names=["lb"])],
        output_names=["a", "b"], label_names=["la", "lb"])
    c.update_dict(OrderedDict([("la", A(L)), ("lb", A(L[:3])), ("lc", A(L))]),
                  OrderedDict([("a", A(P)), ("b", A(P[:3])), ("c", A(P))]))
    _same(c.get(), (["accuracy", "a2"], [0.2222222222222222, 0.3333333333333333]))


def test_check_label_shapes():
    with pytest.raises(ValueError, match="Shape of labels 2 does not match shape of predictions 1"):
        mx.metric.check_label_shapes([1, 2], [3])
    with pytest.raises(ValueError, match=r"\(5, 3\) does not match shape of predictions \(2, 3\)"):
        mx.metric.check_label_shapes(A(RL), A(RP[:2]), shape=True)
    labels, preds = mx.metric.check_label_shapes(A(RL), A(RP), wrap=True)
    assert isinstance(labels, list) and isinstance(preds, list) and len(labels) == 1
    assert mx.metric.check_label_shapes([1], [2], wrap=True) == ([1], [2])


def test_numpy_inputs_accepted():
    # kiln extension: numpy arrays work where MXNet requires NDArrays.
    _same(_upd(mx.metric.Accuracy(), [L], [P]).get(), ("accuracy", 0.16666666666666666))
    _same(_upd(mx.metric.MSE(), [RL], [RP]).get(), ("mse", 0.16478759050369263))
