"""The house rules, read from the code's own imports: which part may import which, no
circles, and the gateway using ``workers`` only through what the package exports.

Every import counts, those inside functions and ``TYPE_CHECKING`` blocks included: a
lazy import is still an arrow between the parts.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import workers

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "workers")

# What each part may import besides itself, by the part's dotted prefix (the longest
# prefix that names a part decides). The order of the gateway's parts is the request
# path from the outside in: the CLI (a client) and the edge at the top, then the control
# plane and the runtime, then what they share.
ALLOWED: dict[str, frozenset[str]] = {
    "gateway.cli": frozenset(
        {"gateway.edge", "gateway.settings", "gateway.logs", "gateway.sagemaker"}
    ),
    "gateway.edge": frozenset(
        {
            "gateway.control",
            "gateway.runtime",
            "gateway.store",
            "gateway.telemetry",
            "gateway.settings",
            "gateway.sagemaker",
            "gateway.clock",
            "workers",
        }
    ),
    "gateway.control": frozenset(
        {
            "gateway.runtime",
            "gateway.store",
            "gateway.settings",
            "gateway.sagemaker",
            "gateway.clock",
            "workers",
        }
    ),
    "gateway.runtime": frozenset(
        {"gateway.telemetry", "gateway.sagemaker", "gateway.clock", "workers"}
    ),
    "gateway.telemetry": frozenset({"gateway.logs", "workers"}),
    "gateway.store": frozenset({"gateway.sagemaker"}),
    "gateway.settings": frozenset({"gateway.sagemaker", "gateway.logs"}),
    "gateway.sagemaker": frozenset(),
    "gateway.clock": frozenset(),
    "gateway.logs": frozenset(),
    "gateway.__main__": frozenset({"gateway.cli"}),
    "gateway": frozenset(),
    # The worker side: the gateway's half and the child's half meet only in the wire.
    "workers.pool": frozenset({"workers.wire"}),
    "workers.child": frozenset({"workers.wire"}),
    "workers.wire": frozenset(),
    "workers": frozenset({"workers.pool", "workers.wire"}),
}


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    line: int
    target: str  # dotted module name imported, or the module of `from X import`
    names: tuple[str, ...]  # names of a `from X import a, b`


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def imports_of(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PACKAGES:
                    yield Import(name, node.lineno, alias.name, ())
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{target}" if target else base
            if target.split(".")[0] in PACKAGES:
                yield Import(name, node.lineno, target, tuple(a.name for a in node.names))


def all_imports() -> list[Import]:
    return [found for name, path in modules().items() for found in imports_of(name, path)]


def part_of(module: str) -> str:
    """The part a module belongs to: the longest ALLOWED prefix naming it."""
    candidates = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    assert candidates, f"{module} belongs to no part: add it to ALLOWED"
    return max(candidates, key=len)


def resolved(imp: Import, known: dict[str, Path]) -> list[str]:
    """The modules an import makes the importer depend on: ``from pkg import module``
    names a submodule; ``from pkg import name`` the package itself."""
    targets = [f"{imp.target}.{n}" for n in imp.names if f"{imp.target}.{n}" in known]
    if len(targets) < len(imp.names) or not imp.names:
        targets.append(imp.target)
    return targets


def test_every_part_imports_only_what_it_may() -> None:
    """No back-arrows: each part imports only the parts below it (ALLOWED)."""
    known = modules()
    wrong = []
    for imp in all_imports():
        mine = part_of(imp.importer)
        for target in resolved(imp, known):
            theirs = part_of(target)
            if theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{imp.importer}:{imp.line} imports {target} ({mine} -> {theirs})")
    assert wrong == []


def test_workers_never_import_gateway() -> None:
    assert [
        i
        for i in all_imports()
        if i.importer.startswith("workers") and i.target.startswith("gateway")
    ] == []


def test_the_gateway_uses_only_what_workers_exports() -> None:
    """The gateway imports ``workers`` itself, never a module inside it, and only names
    the package exports: a worker internal the gateway needs is exported on purpose."""
    exported = set(workers.__all__)
    wrong = []
    for imp in all_imports():
        if not imp.importer.startswith("gateway") or not imp.target.startswith("workers"):
            continue
        if imp.target != "workers":
            wrong.append(f"{imp.importer}:{imp.line} imports {imp.target}")
        wrong.extend(
            f"{imp.importer}:{imp.line} imports workers.{name}, which is not exported"
            for name in imp.names
            if name not in exported
        )
    assert wrong == []


def test_every_export_of_workers_resolves() -> None:
    """Each exported name is defined where the package says."""
    for name in workers.__all__:
        assert getattr(workers, name) is not None


def test_the_import_graph_has_no_circle() -> None:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for imp in all_imports():
        for target in resolved(imp, known):
            if target in known and target != imp.importer:
                graph[imp.importer].add(target)
    cycles = find_cycles(graph)
    assert cycles == []


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


@pytest.mark.parametrize(
    ("graph", "cycles"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder_finds_circles(
    graph: dict[str, set[str]], cycles: list[list[str]]
) -> None:
    """The check above can fail: it sees a circle of two and of three."""
    assert find_cycles(graph) == cycles


def test_the_part_rules_catch_a_back_arrow(tmp_path: Path) -> None:
    """The check above can fail: a runtime module importing the edge is reported."""
    module = tmp_path / "gateway" / "runtime" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text("from gateway.edge.auth import authenticate\n")
    (found,) = imports_of("gateway.runtime.bad", module)
    assert part_of(found.importer) == "gateway.runtime"
    assert part_of(found.target) == "gateway.edge"
    assert "gateway.edge" not in ALLOWED["gateway.runtime"]
