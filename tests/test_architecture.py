"""The layout keeps its rooms: no import cycle (imports inside functions count), no private name imported
across modules, no room over its size. See docs/architecture.md."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_unet"
MAX_MODULE, MAX_CLASS, MAX_FUNCTION = 400, 300, 80


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = (path, ast.parse(path.read_text()))
    return found


MODULES = _modules()


def _imports(name: str, path: Path, tree: ast.Module):
    """(imported module, names) for every import in the module, at any depth, with relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, (path, tree) in MODULES.items():
        if path.name == "__init__.py":
            continue  # a package's __init__ lists its own rooms; what matters is that no room imports it back
        for target, names in _imports(name, path, tree):
            for candidate in [target, *(f"{target}.{n}" for n in names)]:
                if candidate in MODULES and candidate != name:
                    graph[name].add(candidate)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_modules():
    assert _cycle(_graph()) is None


def test_a_cycle_is_found():  # the check itself can fail
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_room_imports_a_name_from_the_package_itself():
    """``from napari_unet import X`` inside the package: only submodules, never the lazy public names."""
    for name, (path, tree) in MODULES.items():
        for target, names in _imports(name, path, tree):
            if target == "napari_unet" and name != "napari_unet":
                assert all(f"napari_unet.{n}" in MODULES for n in names), (name, names)


def test_no_private_name_crosses_modules():
    """Private names (``_foo``) stay in their module; private modules (``from . import _common``) are their
    package's own business, and ``__version__`` has a module of its own."""
    crossing = []
    for name, (path, tree) in MODULES.items():
        for target, names in _imports(name, path, tree):
            if target.startswith("napari_unet"):
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                crossing += [f"{name}: {target}.{n}" for n in private if f"{target}.{n}" not in MODULES]
    assert not crossing, crossing


@pytest.mark.parametrize("name", sorted(MODULES))
def test_rooms_keep_their_size(name):
    path, tree = MODULES[name]
    assert len(path.read_text().splitlines()) <= MAX_MODULE, f"{path.name} is over {MAX_MODULE} lines"
    for node in ast.walk(tree):
        length = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
        if isinstance(node, ast.ClassDef):
            assert length <= MAX_CLASS, f"class {node.name} in {path.name} has {length} lines"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert length <= MAX_FUNCTION, f"{node.name} in {path.name} has {length} lines"
