"""The dependency engine: ordering, asynchrony, errors at the next wait, threads."""
import threading
import time

import numpy as np
import pytest

import kiln as mx
from kiln import engine
from kiln.base import MXNetError


@pytest.fixture(params=["inline_when_idle", "always_queued", "two_workers"])
def any_engine(request, monkeypatch):
    """The process engine as configured by default, one that queues everything, and two workers."""
    if request.param != "inline_when_idle":
        workers = 2 if request.param == "two_workers" else 1
        monkeypatch.setattr(engine, "_engine", engine.Engine(num_workers=workers, inline_elements=0))
    yield engine.get()
    engine.get().waitall()


def test_thousand_ops_from_two_threads(any_engine):
    results, errors = {}, []

    def work(tag, start):
        try:
            a = mx.nd.array(np.arange(10) + start)
            acc = mx.nd.zeros((10,))
            for i in range(500):
                acc = acc + a * 2 if i % 2 == 0 else acc - a
            results[tag] = (acc, np.arange(10) + start)
        except Exception as err:  # reported below, in the test thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k, 100 * k)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    mx.nd.waitall()
    for acc, base in results.values():
        # 250 times (+2a) and 250 times (-a)
        np.testing.assert_allclose(acc.asnumpy(), 250 * base, rtol=1e-6)
    assert len(results) == 2


def test_push_returns_before_the_operation_runs():
    e = engine.get()
    gate, ran = threading.Event(), []
    v = engine.Var()
    e.push(lambda: (gate.wait(10), ran.append(1)), writes=[v])
    assert ran == []  # queued, blocked on the gate
    gate.set()
    e.wait(reads=[v])
    assert ran == [1]


def test_reads_wait_for_earlier_writes_and_writes_for_earlier_reads():
    e = engine.Engine(num_workers=3)
    v = engine.Var()
    log = []

    def step(name, delay):
        def fn():
            time.sleep(delay)
            log.append(name)
        return fn
    e.push(step("w1", 0.05), writes=[v])
    e.push(step("r1", 0.02), reads=[v])
    e.push(step("r2", 0.0), reads=[v])
    e.push(step("w2", 0.0), writes=[v])
    e.push(step("r3", 0.0), reads=[v])
    e.waitall()
    assert log[0] == "w1" and set(log[1:3]) == {"r1", "r2"} and log[3:] == ["w2", "r3"]


def test_independent_readers_overlap_on_several_workers():
    e = engine.Engine(num_workers=2)
    v = engine.Var()
    barrier = threading.Barrier(2, timeout=10)
    e.push(barrier.wait, reads=[v])
    e.push(barrier.wait, reads=[v])  # would time out (BrokenBarrierError) if run one after the other
    e.waitall()


def test_error_surfaces_at_the_next_wait_and_the_engine_stays_usable(any_engine):
    a = mx.nd.ones((3,))

    def fail():
        raise ValueError("kernel exploded")
    engine.get().push(fail, writes=[a._var], name="failing_op")
    b = a + 1  # reads a poisoned array: the failure is passed on, b's kernel is skipped
    with pytest.raises(ValueError, match="kernel exploded"):
        b.wait_to_read()
    # as in MXNet, one failure is raised once, wherever it is met first
    np.testing.assert_array_equal(a.asnumpy(), [1, 1, 1])
    mx.nd.waitall()
    c = mx.nd.array([1.0, 2.0]) * 3
    np.testing.assert_array_equal(c.asnumpy(), [3, 6])


def test_waitall_raises_an_unreported_failure_once():
    a = mx.nd.zeros((2,))

    def fail():
        raise RuntimeError("late failure")
    engine.get().push(fail, writes=[a._var])
    with pytest.raises(RuntimeError, match="late failure"):
        mx.nd.waitall()
    mx.nd.waitall()


def test_naive_engine_runs_synchronously_and_raises_at_once():
    e = engine.Engine(naive=True)
    v, ran = engine.Var(), []
    e.push(lambda: ran.append(1), writes=[v])
    assert ran == [1]
    with pytest.raises(KeyError):
        e.push(lambda: {}["missing"], writes=[v])


def test_python_writes_wait_for_queued_readers(any_engine):
    x = mx.nd.array(np.arange(6, dtype=np.float32))
    y = x * 2  # queued read of x
    x[:] = 0  # must not overtake the read
    np.testing.assert_array_equal(y.asnumpy(), np.arange(6) * 2)
    np.testing.assert_array_equal(x.asnumpy(), np.zeros(6))


def test_views_share_their_base_dependencies(any_engine):
    x = mx.nd.zeros((4, 3))
    row = x[1]
    row += 5
    x += 1
    np.testing.assert_array_equal(x.asnumpy()[1], [6, 6, 6])
    np.testing.assert_array_equal(row.asnumpy(), [6, 6, 6])


def test_arrays_on_different_contexts_are_refused():
    a = mx.nd.ones((2,), ctx=mx.cpu(0))
    b = mx.nd.ones((2,), ctx=mx.cpu(1))
    with pytest.raises(MXNetError, match="one context"):
        a + b
    np.testing.assert_array_equal((a + b.as_in_context(mx.cpu(0))).asnumpy(), [2, 2])
    assert b.copyto(mx.cpu(0)).context == mx.cpu(0)


def test_gpu_arrays_are_refused_without_a_gpu():
    n = mx.context.num_gpus()
    with pytest.raises(MXNetError, match="sees %d GPU" % n):
        mx.nd.ones((2,), ctx=mx.gpu(n))
    with pytest.raises(MXNetError, match="sees %d GPU" % n):
        mx.nd.ones((2,)).copyto(mx.gpu(n + 1))
    with mx.Context("gpu", 0):
        assert mx.current_context() == mx.gpu(0)
    assert mx.current_context() == mx.cpu(0)


def test_out_overlapping_an_input_gives_the_right_answer(any_engine):
    x = mx.nd.array(np.arange(6, dtype=np.float32).reshape(2, 3))
    y = mx.nd.array(np.arange(6, dtype=np.float32).reshape(3, 2))
    mx.nd.transpose(x, out=y)
    np.testing.assert_array_equal(y.asnumpy(), np.arange(6).reshape(2, 3).T)
    x += x
    np.testing.assert_array_equal(x.asnumpy(), 2 * np.arange(6).reshape(2, 3))


def test_bad_out_is_refused_before_running():
    x = mx.nd.ones((2, 3))
    with pytest.raises(MXNetError, match="out"):
        mx.nd.exp(x, out=mx.nd.zeros((3, 2)))


def test_executor_waits_for_queued_writes_to_its_arrays(any_engine):
    x = mx.sym.Variable("x")
    ex = (x * 2).simple_bind(mx.cpu(), x=(4,))
    ex.arg_dict["x"][:] = 1
    mx.nd.elemwise_add(ex.arg_dict["x"], mx.nd.ones((4,)), out=ex.arg_dict["x"])  # queued write
    out = ex.forward()[0]
    np.testing.assert_array_equal(out.asnumpy(), [4, 4, 4, 4])
    y = out * 10  # queued read of the output; the next forward must not overwrite it first
    ex.forward(x=mx.nd.zeros((4,)))
    np.testing.assert_array_equal(y.asnumpy(), [40, 40, 40, 40])
