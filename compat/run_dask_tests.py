"""Run dask/distributed's own public-API tests on shoal, imports changed.

Usage::

    python compat/run_dask_tests.py PATH [--only FILE ...] [-k EXPR] [--report OUT.md]

``PATH`` is a checkout of https://github.com/dask/distributed (a work tree,
or a bare git directory: its HEAD is read). Its test files are not part of
shoal: they are read from there, the tests that use only Dask's public API
are picked (see ``select_tests.py``), each import from ``distributed`` is
rewritten to take its names from shoal (``dask_names.py``), and pytest runs
them in a temporary directory against shoal, installed in this Python.

It prints, per file and in total, how many of the synchronous and of the
asynchronous tests pass, and writes every failure with its first line to
the report.
"""

from __future__ import annotations

import argparse
import ast
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import select_tests  # noqa: E402


def read_test_file(checkout: Path, name: str) -> str:
    """One of ``distributed/tests/`` from a work tree or a bare repository."""
    path = checkout / "distributed" / "tests" / name
    if path.exists():
        return path.read_text()
    out = subprocess.run(
        ["git", "--git-dir", str(checkout), "show", f"HEAD:distributed/tests/{name}"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"cannot read distributed/tests/{name} from {checkout}: {out.stderr.strip()}")
    return out.stdout


def rewrite_imports(source: str) -> str:
    """``source`` with every import from a ``distributed`` module taking its
    names from ``dask_names`` instead.
    """
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(ast.parse(source)):
        indent = " " * getattr(node, "col_offset", 0)
        if isinstance(node, ast.ImportFrom) and select_tests.is_distributed(node.module):
            targets = [a.asname or a.name for a in node.names]
            names = [a.name for a in node.names]
            lhs = ", ".join(targets) + ("," if len(targets) > 1 else "")
            module = select_tests.is_distributed(node.module)
            text = f"{indent}{lhs} = __import__('dask_names').take({module!r}, {names!r})\n"
        elif isinstance(node, ast.Import) and any(
            a.name.split(".")[0] == "distributed" for a in node.names
        ):
            parts = []
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if alias.name.split(".")[0] == "distributed":
                    parts.append(f"{bound} = __import__('dask_names').module({alias.name!r})")
                else:
                    parts.append(
                        f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                    )
            text = "".join(f"{indent}{p}\n" for p in parts)
        else:
            continue
        edits.append((node.lineno - 1, node.end_lineno or node.lineno, text))
    for start, end, text in sorted(edits, reverse=True):
        lines[start:end] = [text]
    return "".join(lines)


def _bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    names = []
    for target in getattr(node, "targets", []) + [getattr(node, "target", None)]:
        for sub in ast.walk(target) if target is not None else []:
            if isinstance(sub, ast.Name):
                names.append(sub.id)
    return names


def isolate_module_statements(source: str) -> str:
    """``source`` with each top-level statement (but imports) in a
    ``try``: one that fails, like a decorator built from a name shoal does
    not have, binds what it would have bound to a stand-in that fails the
    tests using it, instead of failing the whole file at collection.
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
            isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        ):
            continue
        start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno]) - 1
        end = node.end_lineno or node.lineno
        body = "".join("    " + line if line.strip() else line for line in lines[start:end])
        if not body.endswith("\n"):
            body += "\n"
        names = _bound_names(node)
        text = (
            "try:\n" + body + "except Exception as __error:\n"
            f"    __import__('dask_names').failed(globals(), {names!r}, __error)\n"
        )
        edits.append((start, end, text))
    for start, end, text in sorted(edits, reverse=True):
        lines[start:end] = [text]
    return "".join(lines)


def main() -> int:
    """Select, rewrite and run the tests; print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a dask/distributed checkout")
    parser.add_argument("--only", nargs="*", default=None, help="test files to run")
    parser.add_argument("-k", default=None, help="pytest -k expression")
    parser.add_argument("--report", type=Path, default=None, help="write failures here")
    parser.add_argument("--timeout", type=int, default=60, help="seconds per test")
    parser.add_argument("--list", action="store_true", help="print the selection only")
    args = parser.parse_args()

    files = args.only or select_tests.FILES
    work = Path(tempfile.mkdtemp(prefix="shoal-dask-tests-"))
    selected: dict[str, select_tests.Test] = {}
    try:
        for name in files:
            source = read_test_file(args.checkout, name)
            for test in select_tests.analyse(name, source):
                if test.selected:
                    selected[f"{name}::{test.name}"] = test
            (work / name).write_text(isolate_module_statements(rewrite_imports(source)))
        if args.list:
            for node in selected:
                print(node)
            return 0
        shutil.copy(HERE / "conftest.py", work / "conftest.py")
        shutil.copy(HERE / "dask_names.py", work / "dask_names.py")
        (work / "pytest.ini").write_text(
            "[pytest]\nmarkers =\n    slow\n    ci1\n    flaky\n    leaking\n"
            "    workerstate\n    gpu\n    avoid_ci\n    extra_packages\n"
        )
        node_ids = list(selected)
        junit = work / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(work),
            "-c",
            str(work / "pytest.ini"),
            f"--timeout={args.timeout}",
            "--tb=native",
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit2",
        ]
        if args.k:
            command += ["-k", args.k]
        env = dict(os.environ, PYTHONPATH=str(work))
        subprocess.run([*command, *node_ids], cwd=work, env=env)
        return summarise(junit, selected, args.report)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summarise(junit: Path, selected: dict[str, select_tests.Test], report: Path | None) -> int:
    """Print the pass counts; write the failures to ``report``."""
    if not junit.exists():
        print("pytest wrote no results", file=sys.stderr)
        return 1
    outcome: dict[str, tuple[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        file = (case.get("classname") or "").split(".")[-1] + ".py"
        name = (case.get("name") or "").split("[")[0]
        node = f"{file}::{name}"
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status, message = "failed", (child.get("message") or "").splitlines()[0:1]
                message = message[0] if message else child.tag
            elif child.tag == "skipped":
                status, message = "skipped", child.get("message") or ""
        previous = outcome.get(node)
        # a parametrized test passes when every one of its cases passes
        if previous is None or previous[0] == "passed" or status == "failed":
            outcome[node] = (status, message)
    table: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    failures = []
    for node, test in selected.items():
        status, message = outcome.get(node, ("not run", ""))
        kind = "async" if test.is_async else "sync"
        table[test.file][f"{kind} {status}"] += 1
        table["total"][f"{kind} {status}"] += 1
        if status != "passed" and status != "skipped":
            failures.append(f"| `{node}` | {kind} | {status} | {message[:160]} |")
    header = f"{'file':28} {'sync pass':>10} {'of':>4} {'async pass':>11} {'of':>4}"
    print(header)
    for file, counts in table.items():
        sync_all = sum(v for k, v in counts.items() if k.startswith("sync") and "skipped" not in k)
        async_all = sum(
            v for k, v in counts.items() if k.startswith("async") and "skipped" not in k
        )
        print(
            f"{file:28} {counts['sync passed']:>10} {sync_all:>4} "
            f"{counts['async passed']:>11} {async_all:>4}"
        )
    if report is not None:
        report.write_text(
            "| test | kind | outcome | first line |\n|---|---|---|---|\n"
            + "\n".join(failures)
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
