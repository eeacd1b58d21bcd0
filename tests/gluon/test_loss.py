"""gluon.loss against numpy formulas, imperative and hybridized, with gradients."""
import numpy as np
import pytest

import kiln as mx
from kiln import autograd, gluon
from kiln.base import MXNetError

L = gluon.loss
RS = np.random.RandomState(0)
PRED = RS.uniform(-2, 2, (4, 3)).astype(np.float32)
TARGET = RS.uniform(-2, 2, (4, 3)).astype(np.float32)
SW = np.array([[1.0], [0.5], [0.0], [2.0]], dtype=np.float32)
LABEL = np.array([0, 2, 1, 2], dtype=np.float32)


def _log_softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


SIGNED = np.sign(TARGET).astype(np.float32)
BINARY = (TARGET > 0).astype(np.float32)
PROB = 1 / (1 + np.exp(-PRED))
CASES = {
    "l1": (L.L1Loss(), (PRED, TARGET), np.abs(PRED - TARGET).mean(axis=1)),
    "l1_weighted": (L.L1Loss(weight=0.5), (PRED, TARGET, SW), (0.5 * np.abs(PRED - TARGET) * SW).mean(axis=1)),
    "l2": (L.L2Loss(), (PRED, TARGET), (0.5 * (PRED - TARGET) ** 2).mean(axis=1)),
    "l2_sw": (L.L2Loss(weight=2.0), (PRED, TARGET, SW), ((PRED - TARGET) ** 2 * SW).mean(axis=1)),
    "sce_sparse": (L.SoftmaxCrossEntropyLoss(), (PRED, LABEL),
                   -_log_softmax(PRED)[np.arange(4), LABEL.astype(int)]),
    "sce_dense": (L.SoftmaxCrossEntropyLoss(sparse_label=False), (PRED, np.eye(3, dtype=np.float32)[LABEL.astype(int)]),
                  -_log_softmax(PRED)[np.arange(4), LABEL.astype(int)]),
    # batch_axis 0 has one entry here, so MXNet averages everything into shape (1,)
    "sce_axis0": (L.SoftmaxCrossEntropyLoss(axis=0), (PRED.T.copy(), LABEL),
                  np.array([-_log_softmax(PRED.T, axis=0)[LABEL.astype(int), np.arange(4)].mean()])),
    "kl": (L.KLDivLoss(from_logits=False), (PRED, PROB / PROB.sum(1, keepdims=True)),
           (PROB / PROB.sum(1, keepdims=True) * (np.log(PROB / PROB.sum(1, keepdims=True) + 1e-12)
                                                 - _log_softmax(PRED))).mean(axis=1)),
    "bce_logits": (L.SigmoidBCELoss(), (PRED, BINARY), (_softplus(PRED) - PRED * BINARY).mean(axis=1)),
    "bce_sigmoid": (L.SigmoidBCELoss(from_sigmoid=True), (PROB, BINARY),
                    -(np.log(PROB + 1e-12) * BINARY + np.log(1 - PROB + 1e-12) * (1 - BINARY)).mean(axis=1)),
    "huber": (L.HuberLoss(rho=1), (PRED, TARGET),
              np.where(np.abs(PRED - TARGET) > 1, np.abs(PRED - TARGET) - 0.5,
                       0.5 * (PRED - TARGET) ** 2).mean(axis=1)),
    "hinge": (L.HingeLoss(), (PRED, SIGNED), np.maximum(0, 1 - PRED * SIGNED).mean(axis=1)),
    "sq_hinge": (L.SquaredHingeLoss(), (PRED, SIGNED), np.maximum(0, 1 - PRED * SIGNED).__pow__(2).mean(axis=1)),
    "logistic": (L.LogisticLoss(), (PRED, SIGNED), (_softplus(PRED) - PRED * (SIGNED + 1) / 2).mean(axis=1)),
    "logistic_binary": (L.LogisticLoss(label_format="binary"), (PRED, BINARY),
                        (_softplus(PRED) - PRED * BINARY).mean(axis=1)),
    "triplet": (L.TripletLoss(margin=1), (PRED, TARGET, PRED[::-1].copy()),
                np.maximum(0, ((TARGET - PRED) ** 2).sum(1) - ((PRED[::-1] - PRED) ** 2).sum(1) + 1)),
    "poisson": (L.PoissonNLLLoss(), (PRED, np.abs(TARGET)), (np.exp(PRED) - np.abs(TARGET) * PRED).mean()),
    "cosine": (L.CosineEmbeddingLoss(), (PRED, TARGET, np.array([1, -1, 1, -1], dtype=np.float32)), None),
}


def _cosine_expected():
    cos = (PRED * TARGET).sum(1) / (np.linalg.norm(PRED, axis=1) * np.linalg.norm(TARGET, axis=1))
    label = np.array([1, -1, 1, -1])
    return np.where(label == 1, 1 - cos, np.maximum(0, cos)).reshape(-1, 1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_loss_values_imperative_and_hybridized(name):
    loss, args, want = CASES[name]
    want = _cosine_expected() if want is None else want
    nd_args = [mx.nd.array(a) for a in args]
    got = loss(*nd_args).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    loss.hybridize()
    np.testing.assert_allclose(loss(*nd_args).asnumpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["l1", "l2", "sce_sparse", "bce_logits", "huber", "logistic"])
def test_loss_gradients_match_between_imperative_and_hybridized(name):
    loss, args, _ = CASES[name]
    grads = []
    for hybrid in (False, True):
        if hybrid:
            loss.hybridize()
        p = mx.nd.array(args[0])
        p.attach_grad()
        with autograd.record():
            out = loss(p, *[mx.nd.array(a) for a in args[1:]])
        out.backward()
        grads.append(p.grad.asnumpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5, atol=1e-6)
    assert np.abs(grads[0]).sum() > 0


def test_sdml_loss_prefers_matching_pairs():
    xv = RS.uniform(-1, 1, (5, 4)).astype(np.float32)
    matched = L.SDMLLoss()(mx.nd.array(xv), mx.nd.array(xv)).asnumpy()
    reversed_ = L.SDMLLoss()(mx.nd.array(xv), mx.nd.array(xv[::-1].copy())).asnumpy()
    assert matched.shape == (5,) and matched.sum() < reversed_.sum()


def _ctc_grid(shape, a, b):
    """Deterministic inputs, written identically in the MXNet script that produced the goldens."""
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    return (np.sin(a * i) * 2 + np.cos(b * i * i)).reshape(shape).astype(np.float32)


CTC_PRED = _ctc_grid((2, 5, 4), 0.9, 0.4)  # (N, T, C); the blank is class 3
CTC_LABEL = np.array([[0, 1, -1], [2, 2, 1]], np.float32)  # padded with -1
# Recorded from MXNet 1.9.1 (pip mxnet 1.9.1, CPU): gluon.loss.CTCLoss()(pred, label), and
# CTCLoss(layout='TNC', label_layout='TN', weight=0.5)(pred in TNC, label.T, pred_lengths=[4, 5],
# label_lengths=[2, 2], sample_weight=[1, 3]); printed with repr(out.asnumpy().tolist()).
CTC_CASES = {
    "ntc": (dict(), lambda: (CTC_PRED, CTC_LABEL), [4.754247665405273, 5.254977226257324]),
    "tnc_lengths_weighted": (dict(layout="TNC", label_layout="TN", weight=0.5),
                             lambda: (np.ascontiguousarray(CTC_PRED.transpose(1, 0, 2)),
                                      np.ascontiguousarray(CTC_LABEL.T), np.array([4.0, 5.0]), np.array([2.0, 2.0]),
                                      np.array([1.0, 3.0])),
                             [1.4619661569595337, 5.836816787719727]),
}


@pytest.mark.parametrize("name", sorted(CTC_CASES))
def test_ctc_loss_matches_mxnet_imperative_and_hybridized(name):
    kwargs, args, want = CTC_CASES[name]
    loss = L.CTCLoss(**kwargs)
    nd_args = [mx.nd.array(a) for a in args()]
    np.testing.assert_allclose(loss(*nd_args).asnumpy(), want, rtol=1e-6)
    loss.hybridize()
    np.testing.assert_allclose(loss(*nd_args).asnumpy(), want, rtol=1e-6)


def test_ctc_loss_gradients_imperative_and_hybridized_agree():
    grads = []
    for hybrid in (False, True):
        loss = L.CTCLoss(layout="NTC")
        if hybrid:
            loss.hybridize()
        p = mx.nd.array(CTC_PRED)
        p.attach_grad()
        with autograd.record():
            out = loss(p, mx.nd.array(CTC_LABEL), None, mx.nd.array([2.0, 3.0]))
        out.backward()
        grads.append(p.grad.asnumpy())
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-7)
    # per time step the gradient is softmax - posterior, so it sums to zero over classes
    np.testing.assert_allclose(grads[0].sum(axis=2), 0, atol=1e-5)
    assert np.abs(grads[0]).sum() > 0


def test_ctc_loss_refuses_unknown_layouts():
    with pytest.raises(MXNetError, match="layout"):
        L.CTCLoss(layout="NCT")
    with pytest.raises(MXNetError, match="label_layout"):
        L.CTCLoss(label_layout="TC")
