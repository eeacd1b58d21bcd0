"""Optimiser update rules (MXNet 1.9's ``sgd_update``, ``adam_update``... family).

MXNet's operators write the new weight into ``out`` and update their state inputs
(momentum, moments) in place through mutable inputs. kiln has no mutable inputs in
its graph IR, so each rule is an operator whose outputs are the new weight and the
new states, in input order; the Python optimisers call it with
``out=[weight, *states]`` and the imperative path (which computes overlapping
outputs into temporaries first) makes that an in-place update. Attributes, names
and defaults are MXNet's; ``clip_gradient < 0`` means no clipping, as in MXNet.
Every output is computed in float32 for float16 weights (the mp_* forms keep a
float32 master copy, as MXNet).
"""
from __future__ import annotations

import numpy as np

from .. import expr as E
from ..kernel import compute
from . import params as P
from .common import broadcast_index
from .registry import OpDef, register
from .shapes import InferError, unify_all, unify_all_types

COMMON = {"lr": P.Float(), "wd": P.Float(0.0), "rescale_grad": P.Float(1.0), "clip_gradient": P.Float(-1.0)}


def _work_dtype(dtype):
    return "float32" if dtype == "float16" else dtype


def _clip(x, bound):
    """mshadow's clip: values beyond +-bound are set to the bound (no clipping when bound < 0)."""
    if bound < 0:
        return x
    return E.minimum(E.maximum(x, -bound), bound)


def _np_clip(x, bound):
    return x if bound < 0 else np.clip(x, -bound, bound)


def _sign(x):
    one, zero = E.const(1.0, x.dtype), E.const(0.0, x.dtype)
    return E.select(E.cmp("gt", x, zero), one, E.select(E.cmp("lt", x, zero), -one, zero))


def _make_lower(rule, hp_keys=()):
    """Lowering: one Compute stage per output, each evaluating ``rule`` over the loaded inputs
    (a stage recomputes what another output needs: the rules are a few flops per element).
    With ``hp_keys`` the last input is the run-time hyper-parameter vector: its elements, cast
    to the working dtype, stand in for those attributes."""
    def lower(params, ins, outs):
        wt = _work_dtype(outs[0].dtype)
        data = ins[:len(ins) - 1] if hp_keys else ins
        stages = []
        for k, out in enumerate(outs):
            def body(*i, _k=k, _out=out):
                p = params
                if hp_keys:
                    hp = ins[-1]
                    p = dict(params, **{key: E.cast(hp.load([E.const(j, "int64")]), wt)
                                        for j, key in enumerate(hp_keys)})
                loads = [E.cast(b.load(broadcast_index(b, i, _out.shape)), wt) for b in data]
                return E.cast(rule(p, *loads)[_k], _out.dtype)
            stages.append(compute(out, body))
        return stages
    return lower


def _shape_rule(n_out, scalar_inputs=(), n_hp=0):
    """Every input and output has the weight's shape, except (1,)-shaped scalars (lamb's norms)
    and the hyper-parameter vector of the ``_*_hp`` forms (last input, shape (n_hp,))."""
    def rule(params, ins, outs):
        data = ins[:len(ins) - 1] if n_hp else ins
        full = [s for k, s in enumerate(data) if k not in scalar_inputs] + list(outs)
        s = unify_all(full)
        new_ins = [(data[k] or (1,)) if k in scalar_inputs else s for k in range(len(data))]
        for k in scalar_inputs:
            if data[k] is not None and int(np.prod(data[k])) != 1:
                raise InferError("input %d must hold one value, got shape %s" % (k, data[k]))
        if n_hp:
            if ins[-1] is not None and tuple(ins[-1]) != (n_hp,):
                raise InferError("hyper-parameter input must have shape (%d,), got %s" % (n_hp, ins[-1]))
            new_ins.append((n_hp,))
        return new_ins, [s] * n_out
    return rule


def _type_rule(n_in, n_out, f32_inputs=(), f32_outputs=(), hp=False):
    """One dtype for weight-like arrays; float32 for master copies and mp states; float64 for
    the hyper-parameter vector of the ``_*_hp`` forms."""
    def rule(params, ins, outs):
        data = ins[:n_in]
        t = unify_all_types([x for k, x in enumerate(data) if k not in f32_inputs]
                            + [x for k, x in enumerate(outs) if k not in f32_outputs])
        for k in list(f32_inputs):
            if data[k] not in (None, "float32"):
                raise InferError("input %d must be float32, got %s" % (k, data[k]))
        new_ins = ["float32" if k in f32_inputs else t for k in range(n_in)]
        if hp:
            if ins[-1] not in (None, "float64"):
                raise InferError("hyper-parameter input must be float64, got %s" % ins[-1])
            new_ins.append("float64")
        new_outs = ["float32" if k in f32_outputs else t for k in range(n_out)]
        return new_ins, new_outs
    return rule


# Attributes that change between steps (schedules, Adam's bias correction, batch size): the
# optimisers pass them at run time through the ``_<op>_hp`` forms, so one compiled kernel
# serves every step instead of one kernel per learning-rate value.
DYNAMIC = ("lr", "wd", "rescale_grad")
HP_FORMS = {}  # public operator name -> (internal name, hyper-parameter keys in vector order)


def _register_op(name, inputs, schema, rule, reference, out_names, doc, f32_inputs=(), f32_outputs=(),
                 scalar_inputs=(), hp_keys=None, hp_rule=None):
    """The public operator (MXNet's attributes) and its ``_<name>_hp`` run-time form."""
    n_out = len(out_names)
    names = lambda params, _n=tuple(out_names): list(_n)  # noqa: E731
    register(OpDef(name, kind="elementwise", inputs=tuple(inputs), schema=schema, outputs=n_out,
                   output_names=names, shape=_shape_rule(n_out, scalar_inputs),
                   dtype=_type_rule(len(inputs), n_out, f32_inputs, f32_outputs),
                   lower=_make_lower(rule), reference=reference, doc=doc))
    keys = tuple(hp_keys if hp_keys is not None else [k for k in DYNAMIC if k in schema])
    hp_name = "_%s_hp" % name
    register(OpDef(hp_name, kind="injective", inputs=tuple(inputs) + ("hp",),
                   schema={k: f for k, f in schema.items() if k not in keys and k != "t"}, outputs=n_out,
                   output_names=names, shape=_shape_rule(n_out, scalar_inputs, len(keys)),
                   dtype=_type_rule(len(inputs), n_out, f32_inputs, f32_outputs, hp=True),
                   lower=_make_lower(hp_rule or rule, keys),
                   doc="%s with %s read at run time from the float64 vector ``hp``." % (name, ", ".join(keys))))
    HP_FORMS[name] = (hp_name, keys)


def _register(name, inputs, schema, rule, reference, out_names, doc, **kw):
    _register_op(name, inputs, dict(COMMON, **schema), rule, reference, out_names, doc, **kw)


def _np_ref(fn, n_in):
    """Reference wrapper: computes in float64 numpy; output k gets input k's dtype (outputs are the
    weight and the states, in input order)."""
    def reference(params, *arrays):
        res = fn(params, *[np.asarray(a, dtype=np.float64) for a in arrays[:n_in]])
        return tuple(r.astype(a.dtype) for r, a in zip(res, arrays))
    return reference


# ---- SGD family ----
def _sgd(p, w, g):
    return [w * (1.0 - p["lr"] * p["wd"]) - _clip(g * p["rescale_grad"], p["clip_gradient"]) * p["lr"]]


def _np_sgd(p, w, g):
    return [(1.0 - p["lr"] * p["wd"]) * w - p["lr"] * _np_clip(p["rescale_grad"] * g, p["clip_gradient"])]


def _sgd_mom(p, w, g, m):
    mom = m * p["momentum"] - w * (p["lr"] * p["wd"]) - _clip(g * p["rescale_grad"], p["clip_gradient"]) * p["lr"]
    return [w + mom, mom]


def _np_sgd_mom(p, w, g, m):
    mom = p["momentum"] * m - p["lr"] * p["wd"] * w - p["lr"] * _np_clip(p["rescale_grad"] * g, p["clip_gradient"])
    return [w + mom, mom]


def _nag_mom(p, w, g, m):
    """MXNet 1.9's kernel with ``out=weight`` (how every caller uses it): the momentum's weight
    decay term reads the weight after it was overwritten, so this rule uses the new weight."""
    gc = _clip(g * p["rescale_grad"], p["clip_gradient"])
    m1 = m * p["momentum"]
    w2 = w - m1 + (m1 - (gc + w * p["wd"]) * p["lr"]) * (p["momentum"] + 1.0)
    return [w2, m1 - (gc + w2 * p["wd"]) * p["lr"]]


def _np_nag_mom(p, w, g, m):
    gc = _np_clip(p["rescale_grad"] * g, p["clip_gradient"])
    m1 = p["momentum"] * m
    w2 = w - m1 + (p["momentum"] + 1) * (m1 - p["lr"] * (gc + p["wd"] * w))
    return [w2, m1 - p["lr"] * (gc + p["wd"] * w2)]


LAZY = {"lazy_update": P.Bool(True)}
MOM = {"momentum": P.Float(0.0)}

_register("sgd_update", ("weight", "grad"), LAZY, _sgd, _np_ref(_np_sgd, 2), ("weight",),
          "weight = (1 - lr*wd) * weight - lr * clip(rescale_grad * grad, clip_gradient).")
_register("sgd_mom_update", ("weight", "grad", "mom"), dict(LAZY, **MOM), _sgd_mom, _np_ref(_np_sgd_mom, 3),
          ("weight", "mom"),
          "mom = momentum*mom - lr*wd*weight - lr*clip(rescale_grad*grad); weight += mom. "
          "Outputs (weight, mom): call with out=[weight, mom] to update in place.")
_register("nag_mom_update", ("weight", "grad", "mom"), MOM, _nag_mom, _np_ref(_np_nag_mom, 3),
          ("weight", "mom"),
          "Nesterov momentum (MXNet 1.9's form, in place); outputs (weight, mom).")


def _mp(rule):
    """mp_* form: the rule runs on the float32 master copy (last input), the weight gets its cast."""
    def mp_rule(p, w, g, *rest):
        states, w32 = rest[:-1], rest[-1]
        res = rule(p, w32, g, *states)
        return [res[0]] + list(res[1:]) + [res[0]]
    return mp_rule


def _np_mp(rule, n_in):
    """Reference of an mp_* form: the rule on (weight32, grad, states); float32 states and copy."""
    def reference(params, *arrays):
        a = [np.asarray(x, dtype=np.float64) for x in arrays[:n_in]]
        g, rest = a[1], a[2:]
        res = rule(params, rest[-1], g, *rest[:-1])
        outs = [res[0].astype(arrays[0].dtype)] + [r.astype(np.float32) for r in res[1:]] \
            + [res[0].astype(np.float32)]
        return tuple(outs)
    return reference


_register("mp_sgd_update", ("weight", "grad", "weight32"), LAZY, _mp(_sgd), _np_mp(_np_sgd, 3),
          ("weight", "weight32"), "sgd_update on a float32 master copy; outputs (weight, weight32).",
          f32_inputs=(2,), f32_outputs=(1,))
_register("mp_sgd_mom_update", ("weight", "grad", "mom", "weight32"), dict(LAZY, **MOM), _mp(_sgd_mom),
          _np_mp(_np_sgd_mom, 4), ("weight", "mom", "weight32"),
          "sgd_mom_update on a float32 master copy; outputs (weight, mom, weight32).",
          f32_inputs=(2, 3), f32_outputs=(1, 2))
_register("mp_nag_mom_update", ("weight", "grad", "mom", "weight32"), MOM, _mp(_nag_mom),
          _np_mp(_np_nag_mom, 4), ("weight", "mom", "weight32"),
          "nag_mom_update on a float32 master copy; outputs (weight, mom, weight32).",
          f32_inputs=(2, 3), f32_outputs=(1, 2))


# ---- Adam ----
def _adam(p, w, g, m, v):
    gr = _clip(g * p["rescale_grad"] + w * p["wd"], p["clip_gradient"])
    mean = m * p["beta1"] + gr * (1.0 - p["beta1"])
    var = v * p["beta2"] + gr * gr * (1.0 - p["beta2"])
    return [w - mean * p["lr"] / (E.call("sqrt", var) + p["epsilon"]), mean, var]


def _np_adam(p, w, g, m, v):
    gr = _np_clip(p["rescale_grad"] * g + p["wd"] * w, p["clip_gradient"])
    mean = p["beta1"] * m + (1 - p["beta1"]) * gr
    var = p["beta2"] * v + (1 - p["beta2"]) * gr * gr
    return [w - p["lr"] * mean / (np.sqrt(var) + p["epsilon"]), mean, var]


_register("adam_update", ("weight", "grad", "mean", "var"),
          dict(LAZY, beta1=P.Float(0.9), beta2=P.Float(0.999), epsilon=P.Float(1e-8)),
          _adam, _np_ref(_np_adam, 4), ("weight", "mean", "var"),
          "Adam without bias correction (the optimiser folds it into lr); outputs (weight, mean, var).")



# ---- AdamW (MXNet 1.9's contrib ``adamw_update``: decoupled weight decay) ----
def _finite(x):
    """x - x is 0 for finite x and NaN for inf/NaN, so the comparison is false exactly there."""
    return E.cmp("eq", x - x, E.const(0.0, x.dtype))


def _adamw(p, w, g, m, v, rescale):
    """A non-finite ``rescale_grad`` (a loss scaler's overflow signal) skips the step: every
    output keeps its input, as in MXNet."""
    gr = _clip(g * rescale, p["clip_gradient"])
    mean = m * p["beta1"] + gr * (1.0 - p["beta1"])
    var = v * p["beta2"] + gr * gr * (1.0 - p["beta2"])
    new = w - (mean * p["lr"] / (E.call("sqrt", var) + p["epsilon"]) + w * p["wd"]) * p["eta"]
    ok = _finite(rescale)
    return [E.select(ok, new, w), E.select(ok, mean, m), E.select(ok, var, v)]


def _np_adamw(p, w, g, m, v, rescale):
    if not np.all(np.isfinite(rescale)):
        return [w, m, v]
    gr = _np_clip(rescale * g, p["clip_gradient"])
    mean = p["beta1"] * m + (1 - p["beta1"]) * gr
    var = p["beta2"] * v + (1 - p["beta2"]) * gr * gr
    return [w - p["eta"] * (p["lr"] * mean / (np.sqrt(var) + p["epsilon"]) + p["wd"] * w), mean, var]


def _mp_adamw(p, w, g, m, v, w32, rescale):
    res = _adamw(p, w32, g, m, v, rescale)
    return res + [res[0]]


def _np_mp_adamw(p, w, g, m, v, w32, rescale):
    res = _np_adamw(p, *[np.asarray(x, np.float64) for x in (w32, g, m, v, rescale)])
    return (res[0].astype(w.dtype),) + tuple(r.astype(np.float32) for r in res[1:]) + (res[0].astype(np.float32),)


ADAMW = {"lr": P.Float(), "eta": P.Float(), "beta1": P.Float(0.9), "beta2": P.Float(0.999),
         "epsilon": P.Float(1e-8), "wd": P.Float(0.0), "clip_gradient": P.Float(-1.0)}
_register_op("_adamw_update", ("weight", "grad", "mean", "var", "rescale_grad"), ADAMW, _adamw,
             _np_ref(_np_adamw, 5), ("weight", "mean", "var"),
             "AdamW step: w -= eta * (lr * mean / (sqrt(var) + epsilon) + wd * w), gradient scaled by the "
             "(1,)-array rescale_grad; a non-finite rescale_grad skips the step. Outputs (weight, mean, var).",
             scalar_inputs=(4,), hp_keys=("lr", "eta", "wd"))
_register_op("_mp_adamw_update", ("weight", "grad", "mean", "var", "weight32", "rescale_grad"), ADAMW,
             _mp_adamw, _np_mp_adamw, ("weight", "mean", "var", "weight32"),
             "_adamw_update on a float32 master copy; outputs (weight, mean, var, weight32).",
             f32_inputs=(2, 3, 4, 5), f32_outputs=(1, 2, 3), scalar_inputs=(5,), hp_keys=("lr", "eta", "wd"))

# ---- RMSProp ----
def _rmsprop(p, w, g, n):
    gr = _clip(g * p["rescale_grad"] + w * p["wd"], p["clip_gradient"])
    n2 = gr * gr * (1.0 - p["gamma1"]) + n * p["gamma1"]
    w2 = _clip(w - gr * p["lr"] / E.call("sqrt", n2 + p["epsilon"]), p["clip_weights"])
    return [w2, n2]


def _np_rmsprop(p, w, g, n):
    gr = _np_clip(p["rescale_grad"] * g + p["wd"] * w, p["clip_gradient"])
    n2 = (1 - p["gamma1"]) * gr * gr + p["gamma1"] * n
    return [_np_clip(w - p["lr"] * gr / np.sqrt(n2 + p["epsilon"]), p["clip_weights"]), n2]


def _rmspropalex(p, w, g, n, gs, d):
    gr = _clip(g * p["rescale_grad"] + w * p["wd"], p["clip_gradient"])
    n2 = gr * gr * (1.0 - p["gamma1"]) + n * p["gamma1"]
    g2 = gr * (1.0 - p["gamma1"]) + gs * p["gamma1"]
    d2 = d * p["gamma2"] - gr * p["lr"] / E.call("sqrt", n2 - g2 * g2 + p["epsilon"])
    return [_clip(w + d2, p["clip_weights"]), n2, g2, d2]


def _np_rmspropalex(p, w, g, n, gs, d):
    gr = _np_clip(p["rescale_grad"] * g + p["wd"] * w, p["clip_gradient"])
    n2 = (1 - p["gamma1"]) * gr * gr + p["gamma1"] * n
    g2 = (1 - p["gamma1"]) * gr + p["gamma1"] * gs
    d2 = p["gamma2"] * d - p["lr"] * gr / np.sqrt(n2 - g2 * g2 + p["epsilon"])
    return [_np_clip(w + d2, p["clip_weights"]), n2, g2, d2]


RMS = {"gamma1": P.Float(0.95), "epsilon": P.Float(1e-8), "clip_weights": P.Float(-1.0)}
_register("rmsprop_update", ("weight", "grad", "n"), RMS, _rmsprop, _np_ref(_np_rmsprop, 3), ("weight", "n"),
          "Tieleman & Hinton RMSProp; outputs (weight, n).")
_register("rmspropalex_update", ("weight", "grad", "n", "g", "delta"), dict(RMS, gamma2=P.Float(0.9)),
          _rmspropalex, _np_ref(_np_rmspropalex, 5), ("weight", "n", "g", "delta"),
          "Graves' centred RMSProp; outputs (weight, n, g, delta).")


# ---- FTRL ----
def _ftrl(p, w, g, z, n):
    gr = _clip(g * p["rescale_grad"], p["clip_gradient"])
    z2 = z + gr - (E.call("sqrt", n + gr * gr) - E.call("sqrt", n)) * w / p["lr"]
    n2 = n + gr * gr
    zero = E.const(0.0, w.dtype)
    w2 = (_sign(z2) * p["lamda1"] - z2) / ((E.call("sqrt", n2) + p["beta"]) / p["lr"] + p["wd"])
    return [E.select(E.cmp("gt", E.call("abs", z2), E.const(p["lamda1"], w.dtype)), w2, zero), z2, n2]


def _np_ftrl(p, w, g, z, n):
    gr = _np_clip(p["rescale_grad"] * g, p["clip_gradient"])
    z2 = z + gr - (np.sqrt(n + gr * gr) - np.sqrt(n)) * w / p["lr"]
    n2 = n + gr * gr
    w2 = (np.sign(z2) * p["lamda1"] - z2) / ((p["beta"] + np.sqrt(n2)) / p["lr"] + p["wd"]) * (np.abs(z2) > p["lamda1"])
    return [w2, z2, n2]


_register("ftrl_update", ("weight", "grad", "z", "n"), {"lamda1": P.Float(0.01), "beta": P.Float(1.0)},
          _ftrl, _np_ref(_np_ftrl, 4), ("weight", "z", "n"), "FTRL-proximal; outputs (weight, z, n).")


# ---- sign methods ----
def _signsgd(p, w, g):
    return [w * (1.0 - p["lr"] * p["wd"]) - _sign(g) * p["lr"]]


def _np_signsgd(p, w, g):
    return [(1 - p["lr"] * p["wd"]) * w - p["lr"] * np.sign(g)]


def _signum(p, w, g, m):
    mom = m * p["momentum"] - (w * p["wd"] + _clip(g * p["rescale_grad"], p["clip_gradient"])) * (1.0 - p["momentum"])
    return [w * (1.0 - p["lr"] * p["wd_lh"]) + _sign(mom) * p["lr"], mom]


def _np_signum(p, w, g, m):
    mom = p["momentum"] * m - (1 - p["momentum"]) * (p["wd"] * w + _np_clip(p["rescale_grad"] * g, p["clip_gradient"]))
    return [(1 - p["lr"] * p["wd_lh"]) * w + p["lr"] * np.sign(mom), mom]


_register("signsgd_update", ("weight", "grad"), {}, _signsgd, _np_ref(_np_signsgd, 2), ("weight",),
          "weight = (1 - lr*wd)*weight - lr*sign(grad).")
_register("signum_update", ("weight", "grad", "mom"), {"momentum": P.Float(0.0), "wd_lh": P.Float(0.0)},
          _signum, _np_ref(_np_signum, 3), ("weight", "mom"),
          "Signum: momentum of the (decayed) gradient, step by its sign; outputs (weight, mom).")


# ---- FTML ----
def _ftml(p, w, g, d, v, z):
    gr = _clip(g * p["rescale_grad"] + w * p["wd"], p["clip_grad"])
    v2 = v * p["beta2"] + gr * gr * (1.0 - p["beta2"])
    bc1 = p["bc1"] if "bc1" in p else 1.0 - p["beta1"] ** p["t"]
    bc2 = p["bc2"] if "bc2" in p else 1.0 - p["beta2"] ** p["t"]
    d2 = bc1 / p["lr"] * (E.call("sqrt", v2 / bc2) + p["epsilon"])
    z2 = z * p["beta1"] + gr * (1.0 - p["beta1"]) - (d2 - d * p["beta1"]) * w
    return [-z2 / d2, d2, v2, z2]


def _np_ftml(p, w, g, d, v, z):
    gr = _np_clip(p["rescale_grad"] * g + p["wd"] * w, p["clip_grad"])
    v2 = p["beta2"] * v + (1 - p["beta2"]) * gr * gr
    d2 = (1 - p["beta1"] ** p["t"]) / p["lr"] * (np.sqrt(v2 / (1 - p["beta2"] ** p["t"])) + p["epsilon"])
    z2 = p["beta1"] * z + (1 - p["beta1"]) * gr - (d2 - p["beta1"] * d) * w
    return [-z2 / d2, d2, v2, z2]


_register_op("ftml_update", ("weight", "grad", "d", "v", "z"),
             {"lr": P.Float(), "beta1": P.Float(0.6), "beta2": P.Float(0.999), "epsilon": P.Float(1e-8),
              "t": P.Int(), "wd": P.Float(0.0), "rescale_grad": P.Float(1.0), "clip_grad": P.Float(-1.0)},
             _ftml, _np_ref(_np_ftml, 5), ("weight", "d", "v", "z"),
             "FTML (Zheng & Kwok); MXNet's attribute is clip_grad; outputs (weight, d, v, z).",
             hp_keys=("lr", "wd", "rescale_grad", "bc1", "bc2"))


# ---- LAMB ----
LAMB1 = {"beta1": P.Float(0.9), "beta2": P.Float(0.999), "epsilon": P.Float(1e-6), "t": P.Int(),
         "bias_correction": P.Bool(True), "wd": P.Float(), "rescale_grad": P.Float(1.0),
         "clip_gradient": P.Float(-1.0)}


def _lamb1(p, w, g, m, v):
    gr = _clip(g * p["rescale_grad"], p["clip_gradient"])
    mean = m * p["beta1"] + gr * (1.0 - p["beta1"])
    var = v * p["beta2"] + gr * gr * (1.0 - p["beta2"])
    if p["bias_correction"]:
        bc1 = p["bc1"] if "bc1" in p else 1.0 - p["beta1"] ** p["t"]
        bc2 = p["bc2"] if "bc2" in p else 1.0 - p["beta2"] ** p["t"]
        mh = mean / bc1
        vh = var / bc2
        out = mh / (E.call("sqrt", vh) + p["epsilon"]) + w * p["wd"]
    else:
        out = mean / (E.call("sqrt", var) + p["epsilon"]) + w * p["wd"]
    return [out, mean, var]


def _np_lamb1(p, w, g, m, v):
    gr = _np_clip(p["rescale_grad"] * g, p["clip_gradient"])
    mean = p["beta1"] * m + (1 - p["beta1"]) * gr
    var = p["beta2"] * v + (1 - p["beta2"]) * gr * gr
    if p["bias_correction"]:
        mh, vh = mean / (1 - p["beta1"] ** p["t"]), var / (1 - p["beta2"] ** p["t"])
        return [mh / (np.sqrt(vh) + p["epsilon"]) + p["wd"] * w, mean, var]
    return [mean / (np.sqrt(var) + p["epsilon"]) + p["wd"] * w, mean, var]


def _lamb2(p, w, g, r1, r2):
    if p["lower_bound"] >= 0:
        r1 = E.maximum(r1, E.const(p["lower_bound"], r1.dtype))
    if p["upper_bound"] >= 0:
        r1 = E.minimum(r1, E.const(p["upper_bound"], r1.dtype))
    zero = E.const(0.0, r1.dtype)
    degenerate = E.Call("or", (E.cmp("eq", r1, zero), E.cmp("eq", r2, zero)))
    ratio = E.select(degenerate, E.const(1.0, r1.dtype), r1 / r2)
    return [w - g * ratio * p["lr"]]


def _np_lamb2(p, w, g, r1, r2):
    r1 = r1.reshape(-1)[0]
    r2 = r2.reshape(-1)[0]
    if p["lower_bound"] >= 0:
        r1 = max(r1, p["lower_bound"])
    if p["upper_bound"] >= 0:
        r1 = min(r1, p["upper_bound"])
    ratio = 1.0 if r1 == 0 or r2 == 0 else r1 / r2
    return [w - p["lr"] * ratio * g]


LAMB2 = {"lr": P.Float(), "lower_bound": P.Float(-1.0), "upper_bound": P.Float(-1.0)}


def _register_lamb():
    bc = ("wd", "rescale_grad", "bc1", "bc2")
    _register_op("lamb_update_phase1", ("weight", "grad", "mean", "var"), LAMB1, _lamb1, _np_ref(_np_lamb1, 4),
                 ("g", "mean", "var"), "LAMB phase 1: the update direction g; outputs (g, mean, var).",
                 hp_keys=bc)
    _register_op("lamb_update_phase2", ("weight", "g", "r1", "r2"), LAMB2, _lamb2, _np_ref(_np_lamb2, 4),
                 ("weight",), "LAMB phase 2: weight -= lr * (r1/r2) * g (ratio 1 if a norm is 0).",
                 scalar_inputs=(2, 3))
    _register_op("mp_lamb_update_phase1", ("weight", "grad", "mean", "var", "weight32"), LAMB1, _mp_lamb1,
                 _np_mp_lamb1, ("g", "mean", "var"), "lamb_update_phase1 on the float32 master copy.",
                 f32_inputs=(2, 3, 4), f32_outputs=(0, 1, 2), hp_keys=bc)
    _register_op("mp_lamb_update_phase2", ("weight", "g", "r1", "r2", "weight32"), LAMB2, _mp_lamb2,
                 _np_mp_lamb2, ("weight", "weight32"),
                 "lamb_update_phase2 on the float32 master copy; outputs (weight, weight32).",
                 f32_inputs=(1, 2, 3, 4), f32_outputs=(1,), scalar_inputs=(2, 3))


def _mp_lamb1(p, w, g, m, v, w32):
    return _lamb1(p, w32, g, m, v)


def _np_mp_lamb1(p, w, g, m, v, w32):
    res = _np_lamb1(p, *[np.asarray(x, np.float64) for x in (w32, g, m, v)])
    return tuple(r.astype(np.float32) for r in res)


def _mp_lamb2(p, w, g, r1, r2, w32):
    new = _lamb2(p, w32, g, r1, r2)[0]
    return [new, new]


def _np_mp_lamb2(p, w, g, r1, r2, w32):
    new = _np_lamb2(p, np.asarray(w32, np.float64), np.asarray(g, np.float64), r1, r2)[0]
    return new.astype(w.dtype), new.astype(np.float32)


_register_lamb()


# Every operator of this module: none has a gradient (MXNet's have none either).
UPDATE_OPS = ("sgd_update", "sgd_mom_update", "nag_mom_update", "mp_sgd_update", "mp_sgd_mom_update",
              "mp_nag_mom_update", "adam_update", "rmsprop_update", "rmspropalex_update", "ftrl_update",
              "signsgd_update", "signum_update", "lamb_update_phase1", "lamb_update_phase2",
              "mp_lamb_update_phase1", "mp_lamb_update_phase2", "ftml_update", "_adamw_update",
              "_mp_adamw_update")
