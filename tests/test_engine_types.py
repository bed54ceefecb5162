"""The engine boundary's values have names: specs, outcomes, errors."""

from __future__ import annotations

import dataclasses

import pytest

from shoal import _engine
from shoal.core import options

from tasks import div, inc


def test_a_task_spec_has_named_fields_and_a_readable_repr():
    spec = _engine.TaskSpec("inc-1", 7, [b"args"], ["x-0"], wanted=False, options=1)
    assert (spec.key, spec.func, spec.frames, spec.deps) == ("inc-1", 7, [b"args"], ["x-0"])
    assert (spec.wanted, spec.options) == (False, 1)
    assert "inc-1" in repr(spec) and "x-0" in repr(spec)
    with pytest.raises(AttributeError):
        spec.key = "other"  # frozen


def test_a_graph_part_reads_its_nodes_in_order_and_is_sent_once(client):
    from shoal import delayed
    from shoal.core.graph import Node, submission_order
    from shoal.core.options import OptionsTable

    x = delayed(inc)(1)
    y = delayed(inc)(x)
    both = delayed(div)(y, x)
    order = submission_order([both])
    # Dependencies first, each node once (x is reached twice).
    assert [n.key for n in order] == [x.key, y.key, both.key]
    assert _engine.node_order([both], Node) == order
    part = _engine.GraphPart(order, {both.key}, 0, lambda node: 0)
    assert len(part) == 3 and part.wanted_keys == [both.key]
    assert part.nbytes > 0 and "3 tasks" in repr(part)
    table = OptionsTable()
    table.index(options.DEFAULT)
    session = client._session
    with session.submitting:
        session.submit_graph_part(part, table, True)
        with pytest.raises(RuntimeError, match="already sent"):
            session.submit_graph_part(part, table, True)
    session.drop_ref(both.key)


def test_task_options_are_parsed_once_and_shared_by_equal_tasks():
    opts = options.parse(priority=2, retries=1, workers="w1", allow_other_workers=True)
    sent = opts.engine.fields()
    assert (sent["priority"], sent["retries"], sent["workers"], sent["loose"]) == (
        2,
        1,
        ["w1"],
        True,
    )
    # Every option the parser has is a field of the wire's struct, by name.
    assert set(sent) == {f.name for f in dataclasses.fields(options.Options)}
    # Annotations override the call's options field by field.
    assert options.parse(opts, retries=5) == options.Options(
        priority=2, retries=5, workers=("w1",), loose=True
    )
    # Parsed once and remembered, but a value of another type is parsed anew.
    assert options.parse(retries=1) is options.parse(retries=1)
    with pytest.raises(TypeError):
        options.parse(retries=True)
    assert options.parse(priority=0, retries=None) is options.DEFAULT
    table = options.OptionsTable()
    assert [
        table.index(o)
        for o in (
            opts,
            options.DEFAULT,
            options.parse(priority=2, retries=1, workers=["w1"], allow_other_workers=True),
        )
    ] == [0, 1, 0]
    assert len(table.to_engine()) == 2


def test_the_engine_refuses_task_options_the_wire_does_not_have():
    with pytest.raises(ValueError, match="unknown field `retry_jitter`"):
        _engine.TaskOptions(retry_jitter=0.5)
    with pytest.raises(ValueError, match="bad task options"):
        _engine.TaskOptions(retries="two")
    assert _engine.TaskOptions().fields()["retries"] == 0


@pytest.mark.parametrize(
    "bad, error",
    [
        ({"priority": "high"}, TypeError),
        ({"priority": 2**40}, ValueError),
        ({"retries": -1}, ValueError),
        ({"retries": 1.5}, TypeError),
        ({"retry_delay": -1}, ValueError),
        ({"retry_delay": 2, "retry_max_delay": 1}, ValueError),
        ({"resources": {"GPU": -1}}, ValueError),
        ({"resources": ["GPU"]}, TypeError),
        ({"allow_other_workers": True}, ValueError),
        ({"limits": [f"L{i}" for i in range(17)]}, ValueError),
        ({"limits": [3]}, TypeError),
    ],
)
def test_every_way_of_making_tasks_refuses_bad_options_alike(client, bad, error):
    import dask

    from shoal import delayed

    with pytest.raises(error):
        client.submit(inc, 1, **bad)
    with pytest.raises(error):
        client.map(inc, [1, 2], **bad)
    if set(bad) <= {"priority", "retries", "resources", "allow_other_workers", "limits"}:
        with pytest.raises(error):
            client.compute(delayed(inc)(1), **bad)
    with pytest.raises(error), dask.annotate(**bad):
        client.compute(dask.delayed(inc)(2))


def test_map_checks_explicit_keys(client):
    with pytest.raises(TypeError):
        client.map(inc, [1, 2], key=["ok", ("a", [1])])


def test_outcomes_and_errors_are_typed(client):
    good, bad = client.submit(inc, 1), client.submit(div, 1, 0)
    value, error = client._session.outcomes([good.key, bad.key])
    assert isinstance(value, _engine.Outcome.Value) and value.frames
    assert isinstance(error, _engine.Outcome.Error) and not hasattr(error, "frames")
    assert isinstance(error.error, _engine.TaskError.Raised)
    assert error.error.type_name == "ZeroDivisionError"
    assert "division by zero" in error.error.message
    assert "div" in error.error.traceback
    assert "ZeroDivisionError" in repr(error)
