"""The package's shape, checked from the source: no import cycles, imports run downward.

Every `import sdcli...` counts, at module level or inside a function (a lazy import is
still a dependency); for the cycle check, `if TYPE_CHECKING:` imports count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "sdcli"

# Layers, top to bottom (DESIGN.md): a module may import its own layer and those below it.
LAYERS = {
    "cli": 6, "__main__": 6,
    "server": 5,
    "batch": 4,
    "job": 3,
    "execution": 2, "controlnet": 2,
    "families": 1, "models": 1, "sampling": 1, "conditioning": 1, "io": 1,
    "request": 0,
    "errors": -1, "": -1,  # sdcli/__init__.py: the version
}
# Modules whose layer is not their package's, each with its reason.
MODULE_LAYERS = {
    "sdcli.controlnet.units": 0,  # ControlNet units as requested: pure request data
    "sdcli.sampling.samplers": 0,  # the sampler table: pure names and rules, part of the request vocabulary
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(path: Path, known: dict[str, Path], *, type_checking: bool) -> set[str]:
    """The sdcli modules `path` imports (a package's name when no module of that name exists)."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node.test) and not type_checking:
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "sdcli")

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            assert node.level == 0, f"{path}: relative import (sdcli imports absolutely)"
            if node.module and node.module.split(".")[0] == "sdcli":
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    found.add(full if full in known else node.module)

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return {name for name in found if name in known}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> int:
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else ""]


def test_no_import_cycles():
    known = modules()
    graph = {name: imports(path, known, type_checking=True) - {name} for name, path in known.items()}
    assert cycles(graph) == []


def test_imports_run_downward():
    known = modules()
    upward = [f"{name} (layer {layer(name)}) imports {other} (layer {layer(other)})"
              for name, path in known.items() for other in sorted(imports(path, known, type_checking=False))
              if layer(other) > layer(name)]
    assert upward == []


def test_every_package_has_a_layer():
    packages = {name.split(".")[1] for name in modules() if name.count(".")}
    assert packages <= set(LAYERS), f"give these packages a layer: {sorted(packages - set(LAYERS))}"


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
    ({"a": {"a"}}, [["a"]]),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert cycles(graph) == expected


def test_the_import_reader_sees_lazy_and_type_checking_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sdcli.errors import UsageError\n"
                      "def f():\n    import sdcli.io.images\n    from sdcli.request import hires\n")
    known = modules()
    assert imports(source, known, type_checking=True) == {"sdcli.errors", "sdcli.io.images",
                                                          "sdcli.request.hires"}
    assert imports(source, known, type_checking=False) == {"sdcli.io.images", "sdcli.request.hires"}
