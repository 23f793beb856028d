"""Dependencies point one way: the package's import graph has no cycle.

The graph is read from the source (``ast``), so it holds every import a module can run, at
load time or inside a function; imports under ``if TYPE_CHECKING:`` are for the type checker
only and are left out. A cycle is reported with every module in it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"codecstream": ROOT / "engine", "codecstream.models": ROOT / "models"}


def _modules() -> dict[str, Path]:
    """Module name → file, for every module of the installed package layout."""
    modules: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for orelse in child.orelse:
                    visit(orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # `from pkg import sub` imports the submodule when there is one.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a non-module name
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert "codecstream.streams" in graph["codecstream"]
    assert "codecstream.streaming.module" in graph["codecstream.streaming"]
    assert any(target.startswith("codecstream.models.encodec") for target in graph["codecstream.models"])


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


#: Where one model family truly composes another: Vocos-EnCodec decodes EnCodec's codes with
#: EnCodec's own encoder and quantizer.
COMPOSED = {("vocos", "encodec")}


def test_families_share_blocks_not_each_other():
    graph = import_graph()
    family_imports = set()
    for module, targets in graph.items():
        parts = module.split(".")
        if len(parts) < 3 or parts[1] != "models" or parts[2] == "blocks":
            continue
        for target in targets:
            other = target.split(".")
            if len(other) >= 3 and other[1] == "models" and other[2] not in (parts[2], "blocks"):
                family_imports.add((parts[2], other[2]))
    assert family_imports <= COMPOSED, f"families importing each other: {sorted(family_imports - COMPOSED)}"


def test_layers_point_one_way():
    """The contract and the streaming layers never import a model, the registry or the I/O above them."""
    graph = import_graph()
    above = ("codecstream.models", "codecstream.registry", "codecstream.voco", "codecstream.runtime", "codecstream.server",
             "codecstream.io", "codecstream.tokens", "codecstream.commands")
    for module in ("codecstream.contract", "codecstream.plugin", "codecstream.streams", "codecstream.windowed", "codecstream.latents"):
        assert not any(t.startswith(above) for t in _reachable(graph, module)), module
    # Only the commands (and `python -m codecstream`, which runs them) import the commands.
    importers = {m for m, targets in graph.items() for t in targets if t.startswith("codecstream.commands")}
    assert {m for m in importers if not m.startswith("codecstream.commands")} == {"codecstream.__main__"}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
