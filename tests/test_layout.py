"""The package's shape: imports go one way, and the code that loads TensorFlow is one package."""

import ast
from pathlib import Path

import sweep

PACKAGE = Path(sweep.__file__).resolve().parent
# Modules a report, a usage error or `status` may load: none of them may reach the engine.
TENSORFLOW_FREE = ("sweep.settings", "sweep.spaces", "sweep.data", "sweep.state",
                   "sweep.interrupts", "sweep.ranking", "sweep.errors",
                   "sweep.distributed.cluster", "sweep.reporting")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _import_graph() -> dict[str, set[str]]:
    """Each module's imports of the package's modules, wherever they stand (function-level
    imports too: a cycle there still ties the two modules together). `from a import b` is an
    import of module `a.b` when there is one, of `a` otherwise."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found |= {f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in
                          modules else node.module for alias in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done, path = set(), []

    def visit(node):
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph[node]):
            if found := visit(target):
                return found
        path.pop()
        done.add(node)
        return None

    return next((c for c in map(visit, sorted(graph)) if c), None)


def test_no_import_cycle():
    graph = _import_graph()
    graph["sweep"] = set()  # `sweep/__init__` only re-exports the API for users
    assert _cycle(graph) is None


def test_tensorflow_free_modules_never_reach_the_engine():
    graph = _import_graph()
    graph["sweep"] = set()
    for start in [m for m in graph if m.startswith(TENSORFLOW_FREE)]:
        reached, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - reached:
                reached.add(target)
                todo.append(target)
        assert not [m for m in reached if m.startswith("sweep.engine")], start


def test_the_readme_layout_names_every_module():
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    unnamed = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
               if not path.name.startswith("__") and path.name not in layout]
    assert unnamed == []


def _imported_modules(path: Path) -> set[str]:
    """The modules `path` imports, as written (`from a import b` gives `a`)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_the_space_loader_knows_the_built_in_spaces_package():
    """The core does not depend on its plug-ins: spaces receive `sweep.spaces.TrainingTask`."""
    users = [name for name, path in _modules().items()
             if any(m.split(".")[0] == "search_spaces" for m in _imported_modules(path))]
    assert users == ["sweep.spaces"]
