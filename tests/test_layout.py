"""The package's layering: modules import downwards only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import shoal

ROOT = Path(shoal.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["shoal", *parts])] = path
    return out


MODULES = _modules()


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _imports(module: str) -> set[str]:
    """shoal modules that ``module`` imports, anywhere in its body (inside
    functions too), except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if _is_package(module) else module.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("shoal"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("shoal"):
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    found.add(sub if sub in MODULES else target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    # A module's own package and the package's __init__ are not edges.
    return {m for m in found if m in MODULES and m != module and not module.startswith(m + ".")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state:
                found = walk(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = walk(m)
            if found:
                return found
    return None


def test_no_module_imports_another_in_a_circle():
    graph = {m: _imports(m) for m in MODULES}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_core_imports_nothing_above_it():
    for m in MODULES:
        if m.startswith("shoal.core"):
            above = {i for i in _imports(m) if not i.startswith("shoal.core")}
            assert above == set(), f"{m} imports {above}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_alone(module):
    out = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr


def _calls(module: str) -> set[str]:
    """Dotted names called in ``module`` (``_engine.TaskSpec``, ...)."""
    return _calls_in(MODULES[module].read_text())


def _calls_in(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            parts = []
            f = node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                parts.append(f.id)
                found.add(".".join(reversed(parts)))
    return found


# What ARCHITECTURE.md says is made or parsed in one place, and that place.
ONE_PLACE = {
    "_engine.TaskSpec": "shoal.core.spec",
    "_engine.TaskOptions": "shoal.core.options",
    "_engine.WorkerRuntime": "shoal.worker.options",
    "_engine.ClientCore": "shoal.core.session",
    "memory_.parse_memory_limit": "shoal.worker.options",
}


@pytest.mark.parametrize("call, home", sorted(ONE_PLACE.items()))
def test_what_is_made_in_one_place_is_made_only_there(call, home):
    makers = {m for m in MODULES if call in _calls(m)}
    assert makers == {home}, f"{call} is called in {sorted(makers)}, not only in {home}"


def test_only_the_session_holds_the_engine_handle():
    # Other modules call the Session's methods, never `session.engine`.
    reaching = [
        m
        for m in MODULES
        if m != "shoal.core.session"
        and ".engine." in MODULES[m].read_text().replace("opts.engine", "")
    ]
    assert reaching == []


def test_the_one_place_check_sees_a_maker_wherever_it_calls():
    # The check above can fail: a call nested in a function is seen.
    source = "def f():\n    return [g(_engine.TaskSpec('k', 0, []))]\n"
    assert "_engine.TaskSpec" in _calls_in(source)


def _scheme_literals(source: str) -> list[str]:
    """String constants in ``source`` that are an address scheme itself."""
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and node.value in ("tcp://", "tls://")
    ]


def test_address_schemes_come_from_the_engine():
    # shoal_proto::addr is the one place `tcp://`/`tls://` are written;
    # Python asks it (`_engine.scheme`, `in_scheme`, `strip_scheme`).
    writing = [m for m in MODULES if _scheme_literals(MODULES[m].read_text())]
    assert writing == []
    assert _scheme_literals('x = "tls://" if tls else "tcp://"\n') == ["tls://", "tcp://"]
