"""``mx.monitor.Monitor``: statistics of executor arrays every ``interval`` batches (MXNet 1.9.1's API).

kiln's Executor runs its whole graph as one native program and has no per-node output hook
(MXNet's ``set_monitor_callback``), so between ``tic`` and ``toc`` the monitor collects, for
each installed executor, its outputs (named as ``list_outputs``), then its arguments and
auxiliary states (as MXNet's ``toc`` does), all filtered by ``pattern``. Intermediate node
outputs are not seen; ``monitor_all`` (node inputs too) adds nothing beyond the arguments.
An executor that does offer ``set_monitor_callback(callback, monitor_all)`` gets MXNet's
per-node callback instead, called with (name, NDArray).
"""
from __future__ import annotations

import logging
import re
from math import sqrt

from . import ndarray
from .ndarray import NDArray

__all__ = ["Monitor"]


class Monitor:
    """Collect ``stat_func`` of the arrays whose names match ``pattern`` every ``interval`` steps."""

    def __init__(self, interval, stat_func=None, pattern=".*", sort=False, monitor_all=False):
        if stat_func is None:
            def asum_stat(x):
                """The default statistic: ||x|| / sqrt(size)."""
                return ndarray.norm(x) / sqrt(x.size)
            stat_func = asum_stat
        self.stat_func = stat_func
        self.interval = interval
        self.activated = False
        self.queue = []
        self.step = 0
        self.exes = []
        self._hooked = set()  # ids of executors that report nodes through a callback
        self.re_prog = re.compile(pattern)
        self.sort = sort
        self.monitor_all = monitor_all

        def stat_helper(name, array):
            if not self.activated or not self.re_prog.match(name):
                return
            self.queue.append((self.step, name, self.stat_func(array)))
        self.stat_helper = stat_helper

    def install(self, exe):
        """Watch ``exe`` (an Executor, or anything with its arrays and names)."""
        hook = getattr(exe, "set_monitor_callback", None)
        if callable(hook):
            hook(self.stat_helper, self.monitor_all)
            self._hooked.add(id(exe))
        self.exes.append(exe)

    def tic(self):
        """Start collecting if this step is a multiple of ``interval``."""
        if self.step % self.interval == 0:
            for exe in self.exes:
                for array in list(exe.arg_arrays) + list(exe.aux_arrays):
                    array.wait_to_read()
            self.queue = []
            self.activated = True
        self.step += 1

    def toc(self):
        """Stop collecting; return [(step, name, stat string)] for this step (empty when inactive)."""
        if not self.activated:
            return []
        for exe in self.exes:
            for array in list(exe.arg_arrays) + list(exe.aux_arrays):
                array.wait_to_read()
        for exe in self.exes:
            if id(exe) not in self._hooked:  # no per-node hook: the graph outputs stand in for it
                for name, array in zip(exe.output_names, exe.outputs):
                    if self.re_prog.match(name):
                        self.queue.append((self.step, name, self.stat_func(array)))
            for name, array in zip(exe.arg_names, exe.arg_arrays):
                if self.re_prog.match(name):
                    self.queue.append((self.step, name, self.stat_func(array)))
            for name, array in zip(exe.aux_names, exe.aux_arrays):
                if self.re_prog.match(name):
                    self.queue.append((self.step, name, self.stat_func(array)))
        self.activated = False
        res = []
        if self.sort:
            self.queue.sort(key=lambda x: x[1])
        for n, k, v_list in self.queue:
            if isinstance(v_list, NDArray):
                v_list = [v_list]
            assert isinstance(v_list, list)
            s = ""
            for v in v_list:
                assert isinstance(v, NDArray)
                if v.shape == (1,):
                    s += str(v.asscalar()) + "\t"
                else:
                    s += str(v.asnumpy()) + "\t"
            res.append((n, k, s))
        self.queue = []
        return res

    def toc_print(self):
        """``toc`` and log each entry (MXNet's line format)."""
        for n, k, v in self.toc():
            logging.info("Batch: {:7d} {:30s} {:s}".format(n, k, v))
