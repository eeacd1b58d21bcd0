"""Optimisers with MXNet 1.9's update rules, learning-rate/weight-decay multipliers and registry.

Each ``update(index, weight, grad, state)`` changes ``weight`` and the state arrays in
place. Rules MXNet implements as operators (SGD, NAG, Adam, RMSProp, Ftrl, FTML, Signum,
LAMB) call kiln's registry operators (``compiler/ops/optimizer.py``, their ``_<op>_hp``
forms, which take lr/wd/rescale_grad at run time) with ``out=[weight, *states]``: the
operators' outputs are the new weight and states, and the imperative path makes the
overlapping ``out=`` an in-place update queued on the engine. The others (AdaGrad,
AdaDelta, Adamax, Nadam, DCASGD, SGLD) are NDArray arithmetic, as in MXNet's Python, with
step-dependent numbers passed as (1,) arrays so no step compiles a new kernel.

Differences from MXNet, on purpose: ``Updater.get_states``/``set_states`` use a
pickle-free format (JSON header + MXNet's NDArray file format) instead of pickle, so
loading a states file never runs code (MXNet's pickled state files cannot be read);
``AdamW`` is MXNet 2.0's (1.9.1 has only its operator); MXNet's aggregated ``multi_*``
updates are not used (``aggregate_num = 0``: one call per parameter, the same numbers); ``AdaDelta`` does not scale the caller's gradient
array in place as MXNet 1.9 does (``grad *= rescale_grad``); RMSProp, AdaGrad, AdaDelta
and Ftrl create their states in the weight's dtype (MXNet makes them float32 whatever
the weight, so float64 or plain float16 weights fail there).
"""
from __future__ import annotations

import json
import logging
import math
import os
import struct
import tempfile
import warnings

import numpy

from ..base import MXNetError
from ..ndarray import NDArray, zeros, load_frombuffer, save as _nd_save
from ..ndarray import clip, sqrt, square, maximum, abs as _nd_abs
from ..ndarray.ndarray import invoke as _invoke
from .. import lr_scheduler as _lr_scheduler
from ..compiler.ops.optimizer import HP_FORMS

__all__ = ["Optimizer", "SGD", "NAG", "Adam", "AdamW", "RMSProp", "AdaGrad", "AdaDelta", "Adamax", "Nadam", "Ftrl",
           "Signum", "LAMB", "FTML", "DCASGD", "SGLD", "ccSGD", "Test", "Updater", "create", "get_updater",
           "register"]

_log = logging.getLogger(__name__)


def _zeros_like(weight, dtype=None):
    return zeros(weight.shape, weight.context, dtype=dtype or weight.dtype)


def _update_op(opname, inputs, outs, attrs):
    """Run an update operator writing its outputs (new weight, new states) into ``outs``.

    Calls the operator's ``_<op>_hp`` form: the values that change between steps (lr, wd,
    rescale_grad, LAMB's bias corrections) travel in a small float64 array instead of the
    attributes, so one compiled kernel serves every step of a schedule."""
    hp_name, keys = HP_FORMS[opname]
    attrs = dict(attrs)
    if "bc1" in keys:
        t = attrs.pop("t")
        attrs["bc1"] = 1.0 - attrs.get("beta1", 0.9) ** t
        attrs["bc2"] = 1.0 - attrs.get("beta2", 0.999) ** t
    values = [float(attrs.pop(k, _HP_DEFAULTS.get(k, 0.0))) for k in keys]
    hp = NDArray(numpy.array(values, dtype=numpy.float64), inputs[0].context)
    _invoke(hp_name, list(inputs) + [hp], attrs, out=list(outs))


_HP_DEFAULTS = {"wd": 0.0, "rescale_grad": 1.0}


def _scalar(value, like):
    """A step-dependent number as a (1,) array broadcast by the operators: a Python number
    would be a scalar attribute, i.e. a new compiled kernel for every value."""
    return NDArray(numpy.full((1,), value, dtype=like.dtype), like.context)


class Optimizer:
    """Base class: learning rate (or scheduler), weight decay, per-parameter multipliers, update counts."""

    opt_registry = {}

    def __init__(self, rescale_grad=1.0, param_idx2name=None, wd=0.0, clip_gradient=None, learning_rate=None,
                 lr_scheduler=None, sym=None, begin_num_update=0, multi_precision=False, param_dict=None):
        self.rescale_grad = rescale_grad
        self.lr_scheduler = lr_scheduler
        if self.lr_scheduler is None and learning_rate is None:
            learning_rate = 0.01
        self.lr = learning_rate
        if self.lr_scheduler is not None and learning_rate is not None:
            if self.lr_scheduler.base_lr != learning_rate:
                _log.warning("learning rate from ``lr_scheduler`` has been overwritten by ``learning_rate`` "
                             "in optimizer.")
                self.lr_scheduler.base_lr = learning_rate
        self.wd = wd
        self.lr_mult = {}
        self.wd_mult = {}
        self.begin_num_update = begin_num_update
        self.num_update = begin_num_update
        self._all_index_update_counts = {0: {}}
        self._index_update_count = self._all_index_update_counts[0]
        self.clip_gradient = clip_gradient
        self.multi_precision = multi_precision
        self.aggregate_num = 0
        if param_idx2name is None:
            param_idx2name = {}
        if not isinstance(param_idx2name, dict):
            raise MXNetError("param_idx2name should be a dict of param indexes to names, got %r"
                             % type(param_idx2name).__name__)
        self.idx2name = param_idx2name.copy()
        self.sym_info = (sym.attr_dict(), sym.list_arguments()) if sym is not None else ()
        self.param_dict = param_dict if param_dict else {}
        self.set_lr_mult({})
        self.set_wd_mult({})

    @staticmethod
    def register(klass):
        """Register an optimiser class under its lower-cased name (``mx.optimizer.create('sgd')``)."""
        if not isinstance(klass, type):
            raise MXNetError("Optimizer.register takes a class, got %r" % (klass,))
        name = klass.__name__.lower()
        if name in Optimizer.opt_registry:
            warnings.warn("WARNING: New optimizer %s.%s is overriding existing optimizer %s.%s"
                          % (klass.__module__, klass.__name__, Optimizer.opt_registry[name].__module__,
                             Optimizer.opt_registry[name].__name__))
        Optimizer.opt_registry[name] = klass
        return klass

    @staticmethod
    def create_optimizer(name, **kwargs):
        if name.lower() in Optimizer.opt_registry:
            return Optimizer.opt_registry[name.lower()](**kwargs)
        raise ValueError("Cannot find optimizer %s" % name)

    @property
    def learning_rate(self):
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    def create_state(self, index, weight):
        """Auxiliary state(s) of one weight (None when the rule has none)."""
        return None

    def create_state_multi_precision(self, index, weight):
        """With multi_precision and a float16 weight: (float32 master copy, state of the copy)."""
        if self.multi_precision and weight.dtype == numpy.float16:
            weight_master_copy = weight.astype(numpy.float32)
            return (weight_master_copy,) + (self.create_state(index, weight_master_copy),)
        if weight.dtype == numpy.float16 and not self.multi_precision:
            warnings.warn("Accumulating with float16 in optimizer can lead to poor accuracy or slow convergence. "
                          "Consider using multi_precision=True option of the optimizer")
        return self.create_state(index, weight)

    def update(self, index, weight, grad, state):
        raise NotImplementedError("%s.update" % type(self).__name__)

    def update_multi_precision(self, index, weight, grad, state):
        if self.multi_precision and weight.dtype == numpy.float16:
            weight_master_copy, original_state = state[0], state[1]
            grad32 = grad.astype(numpy.float32)
            self.update(index, weight_master_copy, grad32, original_state)
            _invoke("Cast", [weight_master_copy], {"dtype": numpy.dtype(weight.dtype).name}, out=weight)
        else:
            self.update(index, weight, grad, state)

    def set_learning_rate(self, lr):
        if self.lr_scheduler is not None:
            raise UserWarning("LRScheduler of the optimizer has already been defined. Note that set_learning_rate "
                              "can mutate the value of the learning rate of the optimizer only when the "
                              "LRScheduler of the optimizer is undefined.")
        self.lr = lr

    def set_lr_scale(self, args_lrscale):
        raise DeprecationWarning

    def set_lr_mult(self, args_lr_mult):
        """Per-parameter learning-rate multipliers (by name or index); symbol ``__lr_mult__`` attrs first."""
        self.lr_mult = {}
        if self.sym_info:
            attr, arg_names = self.sym_info
            for name in arg_names:
                if name in attr and "__lr_mult__" in attr[name]:
                    self.lr_mult[name] = float(attr[name]["__lr_mult__"])
        self.lr_mult.update(args_lr_mult)

    def set_wd_mult(self, args_wd_mult):
        """Per-parameter weight-decay multipliers; names not ending in _weight/_gamma get 0, as MXNet."""
        self.wd_mult = {}
        for n in self.idx2name.values():
            if not (n.endswith("_weight") or n.endswith("_gamma")):
                self.wd_mult[n] = 0.0
        if self.sym_info:
            attr, arg_names = self.sym_info
            for name in arg_names:
                if name in attr and "__wd_mult__" in attr[name]:
                    self.wd_mult[name] = float(attr[name]["__wd_mult__"])
        self.wd_mult.update(args_wd_mult)

    def _set_current_context(self, device_id):
        if device_id not in self._all_index_update_counts:
            self._all_index_update_counts[device_id] = {}
        self._index_update_count = self._all_index_update_counts[device_id]

    def _update_count(self, index):
        if not isinstance(index, (list, tuple)):
            index = [index]
        for idx in index:
            if idx not in self._index_update_count:
                self._index_update_count[idx] = self.begin_num_update
            self._index_update_count[idx] += 1
            self.num_update = max(self._index_update_count[idx], self.num_update)

    def _get_lrs(self, indices):
        lr = self.lr_scheduler(self.num_update) if self.lr_scheduler is not None else self.lr
        return self._scaled(lr, indices, "lr_mult", self.lr_mult)

    def _get_lr(self, index):
        return self._get_lrs([index])[0]

    def _get_wds(self, indices):
        return self._scaled(self.wd, indices, "wd_mult", self.wd_mult)

    def _scaled(self, value, indices, attr, mults):
        """``value`` times each index's multiplier: its Parameter's, else the one set by
        index, else the one set by name (MXNet's order)."""
        out = []
        for index in indices:
            if index in self.param_dict:
                out.append(value * getattr(self.param_dict[index], attr))
            elif index in mults:
                out.append(value * mults[index])
            elif index in self.idx2name:
                out.append(value * mults.get(self.idx2name[index], 1.0))
            else:
                out.append(value)
        return out

    def _get_wd(self, index):
        return self._get_wds([index])[0]

    def _common_attrs(self):
        kwargs = {"rescale_grad": self.rescale_grad}
        if self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        return kwargs

    def _step_attrs(self, index, weight, grad, **extra):
        """Check the arrays, count the update, and give the update operator's attributes:
        the common ones, each of ``extra`` that is set, and this step's lr and wd."""
        lr, wd = self._begin(index, weight, grad)
        kwargs = self._common_attrs()
        kwargs.update({k: v for k, v in extra.items() if v})
        kwargs.update(lr=lr, wd=wd)
        return kwargs

    def _begin(self, index, weight, grad):
        """Check the arrays, count the update, and give this step's (lr, wd)."""
        self._check(weight, grad)
        self._update_count(index)
        return self._get_lr(index), self._get_wd(index)

    def _rescaled(self, grad, plus=None):
        """``rescale_grad * grad`` (``+ plus``, e.g. weight decay), clipped to ``clip_gradient``
        when set: the first step of the rules written with NDArray arithmetic."""
        grad = grad * self.rescale_grad
        if plus is not None:
            grad = grad + plus
        if self.clip_gradient is not None:
            grad = clip(grad, -self.clip_gradient, self.clip_gradient)
        return grad

    def _check(self, weight, grad):
        if not isinstance(weight, NDArray) or not isinstance(grad, NDArray):
            raise MXNetError("%s.update: weight and grad must be NDArrays, got %s and %s"
                             % (type(self).__name__, type(weight).__name__, type(grad).__name__))


register = Optimizer.register
create = Optimizer.create_optimizer


@register
class SGD(Optimizer):
    """SGD with optional momentum: mom = momentum*mom - lr*(rescaled grad + wd*w); w += mom.
    ``lazy_update`` only matters for sparse gradients, which kiln does not have."""

    def __init__(self, momentum=0.0, lazy_update=True, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.lazy_update = lazy_update

    def create_state_multi_precision(self, index, weight):
        if self.multi_precision and weight.dtype == numpy.float16:
            weight_master_copy = weight.astype(numpy.float32)
            return (self.create_state(index, weight_master_copy), weight_master_copy)
        if weight.dtype == numpy.float16 and not self.multi_precision:
            warnings.warn("Accumulating with float16 in optimizer can lead to poor accuracy or slow convergence. "
                          "Consider using multi_precision=True option of the SGD optimizer")
        return self.create_state(index, weight)

    def create_state(self, index, weight):
        return _zeros_like(weight) if self.momentum != 0.0 else None

    MOMENTUM_OP, MP_MOMENTUM_OP = "sgd_mom_update", "mp_sgd_mom_update"

    def _update_impl(self, index, weight, grad, state, multi_precision=False):
        kwargs = self._step_attrs(index, weight, grad, momentum=max(self.momentum, 0))
        if not multi_precision:
            if state is not None:
                _update_op(self.MOMENTUM_OP, [weight, grad, state], [weight, state], kwargs)
            else:
                _update_op("sgd_update", [weight, grad], [weight], kwargs)
        elif state[0] is not None:
            _update_op(self.MP_MOMENTUM_OP, [weight, grad, state[0], state[1]], [weight, state[0], state[1]], kwargs)
        else:
            _update_op("mp_sgd_update", [weight, grad, state[1]], [weight, state[1]], kwargs)

    def update(self, index, weight, grad, state):
        self._update_impl(index, weight, grad, state, multi_precision=False)

    def update_multi_precision(self, index, weight, grad, state):
        use_mp = self.multi_precision and weight.dtype == numpy.float16 and isinstance(state, (tuple, list))
        self._update_impl(index, weight, grad, state, multi_precision=use_mp)


@register
class Signum(Optimizer):
    """signSGD (momentum 0) or Signum: step by the sign of the gradient's momentum."""

    def __init__(self, learning_rate=0.01, momentum=0.9, wd_lh=0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = momentum
        self.wd_lh = wd_lh

    def create_state(self, index, weight):
        return _zeros_like(weight) if self.momentum != 0.0 else None

    def update(self, index, weight, grad, state):
        kwargs = self._step_attrs(index, weight, grad, momentum=max(self.momentum, 0), wd_lh=self.wd_lh)
        if state is not None:
            _update_op("signum_update", [weight, grad, state], [weight, state], kwargs)
        else:
            _update_op("signsgd_update", [weight, grad], [weight], kwargs)


@register
class NAG(SGD):
    """Nesterov accelerated gradient (MXNet 1.9's nag_mom_update); without momentum, SGD."""

    MOMENTUM_OP, MP_MOMENTUM_OP = "nag_mom_update", "mp_nag_mom_update"

    def __init__(self, momentum=0.0, **kwargs):
        super().__init__(momentum=momentum, **kwargs)


@register
class Adam(Optimizer):
    """Adam; the bias correction is folded into the step: lr * sqrt(1 - beta2^t) / (1 - beta1^t)."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, lazy_update=True, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.lazy_update = lazy_update

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))

    def update(self, index, weight, grad, state):
        lr, wd = self._begin(index, weight, grad)
        t = self._index_update_count[index]
        lr *= math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
        kwargs = self._common_attrs()
        kwargs.update(beta1=self.beta1, beta2=self.beta2, epsilon=self.epsilon, lr=lr, wd=wd)
        mean, var = state
        _update_op("adam_update", [weight, grad, mean, var], [weight, mean, var], kwargs)


@register
class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter): w -= lr_t * (m / (sqrt(v) + eps) + wd * w).

    MXNet 1.9.1 ships only the ``adamw_update`` operator; this is MXNet 2.0's optimiser over
    it (eta carries the bias-corrected learning rate, ``correct_bias`` as there)."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-6, correct_bias=True, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.correct_bias = correct_bias

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))

    def update(self, index, weight, grad, state):
        lr, wd = self._begin(index, weight, grad)
        if self.correct_bias:
            t = self._index_update_count[index]
            lr *= math.sqrt(1.0 - self.beta2 ** t) / (1.0 - self.beta1 ** t)
        kwargs = {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon, "lr": 1.0, "eta": lr, "wd": wd}
        if self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        mean, var = state
        _update_op("_adamw_update", [weight, grad, mean, var, _scalar(self.rescale_grad, weight)],
                   [weight, mean, var], kwargs)


@register
class AdaGrad(Optimizer):
    """AdaGrad: history += g^2; w -= lr * (g / sqrt(history + eps) + wd * w)."""

    def __init__(self, eps=1e-7, **kwargs):
        super().__init__(**kwargs)
        self.float_stable_eps = eps

    def create_state(self, index, weight):
        return _zeros_like(weight)

    def update(self, index, weight, grad, state):
        lr, wd = self._begin(index, weight, grad)
        history = state
        grad = self._rescaled(grad)
        history += square(grad)
        div = grad / sqrt(history + self.float_stable_eps)
        weight += (div + weight * wd) * _scalar(-lr, weight)


@register
class RMSProp(Optimizer):
    """RMSProp (Tieleman & Hinton) or, with ``centered``, Graves' version; ``clip_weights`` bounds w."""

    def __init__(self, learning_rate=0.001, gamma1=0.9, gamma2=0.9, epsilon=1e-8, centered=False,
                 clip_weights=None, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.gamma1 = gamma1
        self.gamma2 = gamma2
        self.centered = centered
        self.epsilon = epsilon
        self.clip_weights = clip_weights

    def create_state(self, index, weight):
        if self.centered:
            return (_zeros_like(weight), _zeros_like(weight),
                    _zeros_like(weight))
        return (_zeros_like(weight),)

    def update(self, index, weight, grad, state):
        lr, wd = self._begin(index, weight, grad)
        kwargs = self._common_attrs()
        kwargs.update(gamma1=self.gamma1, epsilon=self.epsilon, lr=lr, wd=wd)
        if self.centered:
            kwargs["gamma2"] = self.gamma2
        if self.clip_weights:
            kwargs["clip_weights"] = self.clip_weights
        if not self.centered:
            n, = state
            _update_op("rmsprop_update", [weight, grad, n], [weight, n], kwargs)
        else:
            n, g, delta = state
            _update_op("rmspropalex_update", [weight, grad, n, g, delta], [weight, n, g, delta], kwargs)


@register
class AdaDelta(Optimizer):
    """AdaDelta (Zeiler); no learning rate, ``wd`` decays the weight directly."""

    def __init__(self, rho=0.9, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))

    def update(self, index, weight, grad, state):
        _, wd = self._begin(index, weight, grad)
        grad = self._rescaled(grad)
        acc_g, acc_delta = state
        acc_g *= self.rho
        acc_g += (1.0 - self.rho) * grad * grad
        current_delta = sqrt(acc_delta + self.epsilon) / sqrt(acc_g + self.epsilon) * grad
        acc_delta *= self.rho
        acc_delta += (1.0 - self.rho) * current_delta * current_delta
        weight -= current_delta + wd * weight


@register
class Ftrl(Optimizer):
    """FTRL-proximal (McMahan et al.), MXNet's ftrl_update."""

    def __init__(self, lamda1=0.01, learning_rate=0.1, beta=1, **kwargs):
        super().__init__(**kwargs)
        self.lamda1 = lamda1
        self.beta = beta
        self.lr = learning_rate

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))

    def update(self, index, weight, grad, state):
        lr, wd = self._begin(index, weight, grad)
        kwargs = self._common_attrs()
        kwargs.update(lamda1=self.lamda1, beta=float(self.beta), lr=lr, wd=wd)
        z, n = state
        _update_op("ftrl_update", [weight, grad, z, n], [weight, z, n], kwargs)


@register
class Adamax(Optimizer):
    """Adamax: Adam with the infinity norm (u = max(beta2*u, |g|))."""

    def __init__(self, learning_rate=0.002, beta1=0.9, beta2=0.999, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))

    def update(self, index, weight, grad, state):
        lr, wd = self._begin(index, weight, grad)
        t = self._index_update_count[index]
        lr /= (1.0 - self.beta1 ** t)
        grad = self._rescaled(grad, wd * weight)
        m_t, u_t = state
        m_t *= self.beta1
        m_t += (1.0 - self.beta1) * grad
        maximum(self.beta2 * u_t, _nd_abs(grad), out=u_t)
        weight -= _scalar(lr, weight) * m_t / u_t


@register
class Nadam(Optimizer):
    """Nadam: Adam with Nesterov momentum and a momentum schedule (Dozat)."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, schedule_decay=0.004, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.schedule_decay = schedule_decay
        self.m_schedule = 1.0

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))

    def update(self, index, weight, grad, state):
        lr, wd = self._begin(index, weight, grad)
        t = self._index_update_count[index]
        grad = self._rescaled(grad, wd * weight)
        momentum_t = self.beta1 * (1.0 - 0.5 * pow(0.96, t * self.schedule_decay))
        momentum_t_1 = self.beta1 * (1.0 - 0.5 * pow(0.96, (t + 1) * self.schedule_decay))
        self.m_schedule = self.m_schedule * momentum_t
        m_schedule_next = self.m_schedule * momentum_t_1
        m_t, v_t = state
        m_t *= self.beta1
        m_t += (1.0 - self.beta1) * grad
        v_t *= self.beta2
        v_t += (1.0 - self.beta2) * grad * grad
        grad_prime = grad / _scalar(1.0 - self.m_schedule, grad)
        m_t_prime = m_t / _scalar(1.0 - m_schedule_next, m_t)
        v_t_prime = v_t / _scalar(1.0 - pow(self.beta2, t), v_t)
        m_t_bar = _scalar(1.0 - momentum_t, grad) * grad_prime + _scalar(momentum_t_1, m_t) * m_t_prime
        weight -= _scalar(lr, weight) * m_t_bar / (sqrt(v_t_prime) + self.epsilon)


@register
class LAMB(Optimizer):
    """LAMB (You et al.): Adam direction scaled by ||w|| / ||direction|| per layer."""

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-6, lower_bound=None,
                 upper_bound=None, bias_correction=True, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        self.bias_correction = bias_correction

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight))

    def _update_impl(self, index, weight, grad, state, multi_precision=False):
        lr, wd = self._begin(index, weight, grad)
        kwargs = {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon,
                  "bias_correction": self.bias_correction, "rescale_grad": self.rescale_grad,
                  "t": self._index_update_count[index], "wd": wd}
        if self.clip_gradient:
            kwargs["clip_gradient"] = self.clip_gradient
        bounds = {}
        if self.lower_bound:
            bounds["lower_bound"] = self.lower_bound
        if self.upper_bound:
            bounds["upper_bound"] = self.upper_bound
        if multi_precision:
            weight32 = state[0]
            mean, var = state[1]
            g = _zeros_like(weight, "float32")
            _update_op("mp_lamb_update_phase1", [weight, grad, mean, var, weight32], [g, mean, var], kwargs)
            r_1, r_2 = weight32.norm(), g.norm()
            _update_op("mp_lamb_update_phase2", [weight, g, r_1, r_2, weight32], [weight, weight32],
                       dict(bounds, lr=lr))
        else:
            mean, var = state
            g = _zeros_like(weight)
            _update_op("lamb_update_phase1", [weight, grad, mean, var], [g, mean, var], kwargs)
            r_1, r_2 = weight.norm(), g.norm()
            _update_op("lamb_update_phase2", [weight, g, r_1, r_2], [weight], dict(bounds, lr=lr))

    def update(self, index, weight, grad, state):
        self._update_impl(index, weight, grad, state, multi_precision=False)

    def update_multi_precision(self, index, weight, grad, state):
        use_mp = self.multi_precision and weight.dtype == numpy.float16
        self._update_impl(index, weight, grad, state, multi_precision=use_mp)


@register
class FTML(Optimizer):
    """FTML, Follow the Moving Leader (Zheng & Kwok 2017), MXNet's ftml_update."""

    def __init__(self, beta1=0.6, beta2=0.999, epsilon=1e-8, **kwargs):
        super().__init__(**kwargs)
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon

    def create_state(self, index, weight):
        return (_zeros_like(weight), _zeros_like(weight), _zeros_like(weight))

    def update(self, index, weight, grad, state):
        lr, wd = self._begin(index, weight, grad)
        kwargs = {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon,
                  "rescale_grad": self.rescale_grad, "t": self._index_update_count[index], "lr": lr, "wd": wd}
        if self.clip_gradient:
            kwargs["clip_grad"] = self.clip_gradient
        prev_d, prev_v, prev_z = state
        _update_op("ftml_update", [weight, grad, prev_d, prev_v, prev_z], [weight, prev_d, prev_v, prev_z], kwargs)


@register
class DCASGD(Optimizer):
    """Delay-compensated asynchronous SGD (Zheng et al. 2016). MXNet 1.9 tests ``if mom:`` on an
    NDArray, which fails for momentum > 0 with more than one element; kiln tests ``is not None``."""

    def __init__(self, momentum=0.0, lamda=0.04, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.weight_previous = {}
        self.lamda = lamda

    def create_state(self, index, weight):
        if self.momentum == 0.0:
            return (None, weight.copy())
        return (_zeros_like(weight), weight.copy())

    def update(self, index, weight, grad, state):
        lr, wd = self._begin(index, weight, grad)
        grad = self._rescaled(grad)
        mom, previous_weight = state
        step = _scalar(-lr, weight) * (grad + wd * weight + self.lamda * grad * grad * (weight - previous_weight))
        if mom is not None:
            mom *= self.momentum
            mom += step
        else:
            mom = step
        previous_weight[:] = weight
        weight += mom


@register
class SGLD(Optimizer):
    """Stochastic gradient Langevin dynamics: half an SGD step plus N(0, lr) noise (mx.random)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def create_state(self, index, weight):
        return None

    def update(self, index, weight, grad, state):
        from ..ndarray import random as _random
        lr, wd = self._begin(index, weight, grad)
        grad = self._rescaled(grad)
        weight += _scalar(-lr / 2, weight) * (grad + wd * weight)
        noise = _random.normal(0, 1, shape=weight.shape, dtype=numpy.dtype(weight.dtype).name, ctx=weight.context)
        weight += noise * _scalar(math.sqrt(lr), weight)


@register
class ccSGD(SGD):  # noqa: N801  (MXNet's name)
    """Deprecated alias of SGD kept by MXNet 1.9."""


@register
class Test(Optimizer):
    """MXNet's test optimiser: weight += rescale_grad * grad; the state mirrors the weight."""

    def create_state(self, index, weight):
        return _zeros_like(weight)

    def update(self, index, weight, grad, state):
        weight += grad * self.rescale_grad
        state[:] = weight


# ---- Updater and its pickle-free states format ----
_MAGIC = b"KILNUPD1"


class Updater:
    """Applies an optimiser to (index, grad, weight), creating each index's state on first use."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.states = {}
        self.states_synced = {}
        self.aggregate_updates = optimizer.aggregate_num > 0

    def __call__(self, index, grad, weight):
        if not isinstance(index, (list, tuple)):
            indices, grads, weights = [index], [grad], [weight]
        else:
            indices, grads, weights = list(index), list(grad), list(weight)
        if weights:
            self.optimizer._set_current_context(weights[0].context.device_id)
        for i, idx in enumerate(indices):
            if isinstance(idx, bytes):
                indices[i] = idx = idx.decode("utf-8")
            if idx not in self.states:
                self.states[idx] = self.optimizer.create_state_multi_precision(idx, weights[i])
                self.states_synced[idx] = True
            elif not self.states_synced[idx]:
                self.states[idx] = self.sync_state_context(self.states[idx], weights[i].context)
                self.states_synced[idx] = True
        for i, w, g in zip(indices, weights, grads):
            self.optimizer.update_multi_precision(i, w, g, self.states[i])

    def sync_state_context(self, state, context):
        """States loaded from a file move to the weight's context on first use."""
        if isinstance(state, NDArray):
            return state.as_in_context(context)
        if isinstance(state, (tuple, list)):
            synced = [self.sync_state_context(i, context) for i in state]
            return tuple(synced) if isinstance(state, tuple) else synced
        return state

    def set_states(self, states):
        """Restore ``get_states`` bytes (kiln's format; MXNet's pickles are refused, never unpickled)."""
        decoded, optimizer = _decode_states(states)
        self.states = decoded
        if optimizer is not None:
            self.optimizer = optimizer
        self.states_synced = dict.fromkeys(self.states.keys(), False)

    def get_states(self, dump_optimizer=False):
        """Bytes holding every state (and the optimiser's settings with ``dump_optimizer``)."""
        return _encode_states(self.states, self.optimizer if dump_optimizer else None)


def get_updater(optimizer):
    return Updater(optimizer)


def _encode_key(k):
    if isinstance(k, bool) or not isinstance(k, (int, str, numpy.integer)):
        raise MXNetError("optimizer states: index %r must be an int or a str" % (k,))
    return {"i": int(k)} if isinstance(k, (int, numpy.integer)) else {"s": k}


def _decode_key(k):
    return k["i"] if "i" in k else k["s"]


def _encode_state(value, arrays):
    if value is None:
        return None
    if isinstance(value, NDArray):
        arrays.append(value)
        return {"nd": len(arrays) - 1}
    if isinstance(value, (tuple, list)):
        return {"tuple" if isinstance(value, tuple) else "list": [_encode_state(v, arrays) for v in value]}
    raise MXNetError("optimizer states: cannot save a state of type %s (NDArray, tuple, list or None expected)"
                     % type(value).__name__)


def _decode_state(tree, arrays):
    if tree is None:
        return None
    if "nd" in tree:
        return arrays[tree["nd"]]
    if "tuple" in tree:
        return tuple(_decode_state(v, arrays) for v in tree["tuple"])
    return [_decode_state(v, arrays) for v in tree["list"]]


def _encode_value(v, where):
    """Plain settings (numbers, strings, containers of them) as tagged JSON."""
    if v is None or isinstance(v, (bool, str)):
        return {"v": v}
    if isinstance(v, (int, numpy.integer)):
        return {"v": int(v)}
    if isinstance(v, (float, numpy.floating)):
        f = float(v)
        return {"f": repr(f)} if not math.isfinite(f) else {"v": f}
    if isinstance(v, (tuple, list)):
        return {"tuple" if isinstance(v, tuple) else "list": [_encode_value(x, where) for x in v]}
    if isinstance(v, dict):
        return {"dict": [[_encode_value(k, where), _encode_value(x, where)] for k, x in v.items()]}
    if isinstance(v, _lr_scheduler.LRScheduler):
        return {"sched": type(v).__name__, "attrs": _encode_value(dict(vars(v)), where)}
    raise MXNetError("optimizer states: cannot save optimizer attribute %s of type %s"
                     % (where, type(v).__name__))


def _decode_value(t):
    if "v" in t:
        return t["v"]
    if "f" in t:
        return float(t["f"])
    if "tuple" in t:
        return tuple(_decode_value(x) for x in t["tuple"])
    if "list" in t:
        return [_decode_value(x) for x in t["list"]]
    if "dict" in t:
        return {_hashable(_decode_value(k)): _decode_value(x) for k, x in t["dict"]}
    if "sched" in t:
        klass = getattr(_lr_scheduler, t["sched"], None)
        if not (isinstance(klass, type) and issubclass(klass, _lr_scheduler.LRScheduler)):
            raise MXNetError("optimizer states: unknown lr_scheduler class %r" % t["sched"])
        obj = klass.__new__(klass)
        obj.__dict__.update(_decode_value(t["attrs"]))
        return obj
    raise MXNetError("optimizer states: malformed value %r" % (t,))


def _hashable(k):
    return tuple(_hashable(x) for x in k) if isinstance(k, list) else k


def _encode_optimizer(opt):
    attrs = {k: v for k, v in vars(opt).items() if k not in ("param_dict", "_index_update_count")}
    name = type(opt).__name__.lower()
    if Optimizer.opt_registry.get(name) is not type(opt):
        raise MXNetError("optimizer states: optimizer class %s is not registered, cannot save it"
                         % type(opt).__name__)
    return {"class": name, "attrs": {k: _encode_value(v, k) for k, v in attrs.items()},
            "current": _encode_value(_current_device(opt), "_index_update_count")}


def _current_device(opt):
    for dev, counts in opt._all_index_update_counts.items():
        if counts is opt._index_update_count:
            return dev
    return 0


def _decode_optimizer(t):
    klass = Optimizer.opt_registry.get(t["class"])
    if klass is None:
        raise MXNetError("optimizer states: unknown optimizer %r" % t["class"])
    opt = klass.__new__(klass)
    opt.__dict__.update({k: _decode_value(v) for k, v in t["attrs"].items()})
    opt.param_dict = {}
    opt._index_update_count = opt._all_index_update_counts.setdefault(_decode_value(t["current"]), {})
    return opt


def _encode_states(states, optimizer):
    arrays = []
    header = {"format": 1,
              "states": [[_encode_key(k), _encode_state(v, arrays)] for k, v in states.items()],
              "optimizer": _encode_optimizer(optimizer) if optimizer is not None else None}
    blob = _arrays_to_bytes(arrays)
    head = json.dumps(header).encode("utf-8")
    return _MAGIC + struct.pack("<Q", len(head)) + head + blob


def _decode_states(data):
    if not isinstance(data, (bytes, bytearray)):
        raise MXNetError("optimizer states must be bytes, got %s" % type(data).__name__)
    data = bytes(data)
    if not data.startswith(_MAGIC):
        raise MXNetError("optimizer states: not a kiln states blob (MXNet's pickled states are not read: "
                         "unpickling untrusted data can run code)")
    if len(data) < len(_MAGIC) + 8:
        raise MXNetError("optimizer states: truncated header")
    (n,) = struct.unpack_from("<Q", data, len(_MAGIC))
    start = len(_MAGIC) + 8
    if start + n > len(data):
        raise MXNetError("optimizer states: header length %d exceeds the %d bytes given" % (n, len(data)))
    try:
        header = json.loads(data[start:start + n].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise MXNetError("optimizer states: corrupt header: %s" % err) from None
    arrays = load_frombuffer(data[start + n:]) if len(data) > start + n else []
    if isinstance(arrays, dict):
        arrays = list(arrays.values())
    states = {_decode_key(k): _decode_state(v, arrays) for k, v in header["states"]}
    opt = _decode_optimizer(header["optimizer"]) if header.get("optimizer") else None
    return states, opt


def _arrays_to_bytes(arrays):
    """MXNet's NDArray list format (nd.save) as bytes."""
    fd, path = tempfile.mkstemp(suffix=".params")
    try:
        os.close(fd)
        _nd_save(path, list(arrays))
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)
