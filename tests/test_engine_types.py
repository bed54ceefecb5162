"""The engine boundary's values have names: specs, outcomes, errors."""

from __future__ import annotations

import pytest

from shoal import _engine

from tasks import div, inc


def test_a_task_spec_has_named_fields_and_a_readable_repr():
    spec = _engine.TaskSpec("inc-1", 7, [b"args"], ["x-0"], wanted=False, priority=2)
    assert (spec.key, spec.func, spec.frames, spec.deps) == ("inc-1", 7, [b"args"], ["x-0"])
    assert (spec.wanted, spec.priority, spec.retries, spec.workers) == (False, 2, 0, [])
    assert "inc-1" in repr(spec) and "x-0" in repr(spec)
    with pytest.raises(AttributeError):
        spec.key = "other"  # frozen


def test_outcomes_and_errors_are_typed(client):
    good, bad = client.submit(inc, 1), client.submit(div, 1, 0)
    value, error = client._session.outcomes([good.key, bad.key])
    assert value.kind == "value" and value.error is None and value.frames
    assert error.kind == "error" and error.frames is None
    assert error.error.kind == "raised"
    assert error.error.type_name == "ZeroDivisionError"
    assert "division by zero" in error.error.message
    assert "div" in error.error.traceback
    assert "ZeroDivisionError" in repr(error)
