"""Find, load and describe search spaces.

A space is a module with `build(hp, task) -> keras.Model` (and, ideally, a one-line
`DESCRIPTION`): a built-in one in `search_spaces/` by name, a user's file by path
(`my_space.py`), or an importable module by dotted name (`mypackage.my_space`). Every model any
space builds goes through `sweep.engine.rules` before it trains.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.util
import io
import math
import os
import pkgutil
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import search_spaces
from sweep.errors import SweepError

SHARED_MODULES = {"blocks"}
NO_DESCRIPTION = "(no DESCRIPTION)"


# A space's first layer may whiten the images' patches: a `Conv2D` of this name whose kernel
# the tool sets from the training images before it trains (`sweep.data.patch_whitening`).
WHITENING_LAYER = "whitening"


@dataclass(frozen=True)
class TrainingTask:
    """What a space's `build(hp, task)` is told about the data and the budget, to build and
    compile a model (its learning-rate schedule ends with `epochs`)."""

    input_shape: tuple[int, int, int]
    num_classes: int
    train_size: int
    epochs: int


@dataclass(frozen=True)
class Space:
    name: str
    module: ModuleType

    @property
    def description(self) -> str:
        return getattr(self.module, "DESCRIPTION", NO_DESCRIPTION)

    def build(self, hp, task):
        return self.module.build(hp, task)


def _code_hash(path: Path, text=lambda file: _code_only(file).encode()) -> str:
    """A hash of the space's file and of every module beside it that it imports, however
    indirectly: the built-in spaces are declarations whose models `blocks.py` builds, so an
    edit there changes every space as surely as an edit of the space's own file."""
    digest, path = hashlib.sha256(), path.resolve()
    for file in sorted(_local_code(path)):
        digest.update(f"{os.path.relpath(file, path.parent)}\0".encode())
        digest.update(text(file) + b"\0")
    return digest.hexdigest()


def code_matches(name: str, recorded: str) -> bool:
    """Whether space `name` has the code a search recorded (`source_hash`). Searches made
    before the hash left documentation out recorded a hash of the files' whole text: one of
    those still matches while the files are unchanged, so an upgrade orphans no search."""
    return recorded in (source_hash(name), _code_hash(_source_file(name), Path.read_bytes))


def _code_only(file: Path) -> str:
    """The file's lines without docstrings, comments and blank lines: a space's docstring
    carries the measurements behind its ranges, and recording one must not orphan the search
    running on it; only code can mix two spaces. (Read as text, not as a syntax tree, whose
    printed form changes between Python versions.) A docstring that shares a line with code
    is kept, so no code is ever left out."""
    with tokenize.open(file) as f:  # the file's own encoding, as Python reads it
        source = f.read()
    lines = source.split("\n")  # numbered as `ast` and `tokenize` number them
    docstring_lines = set()
    for node in ast.walk(ast.parse(source, filename=str(file))):
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and ast.get_docstring(node, clean=False) is not None
                and _alone_on_its_lines(node.body[0], lines)):
            docstring_lines.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    comment_starts = {token.start[0]: token.start[1]
                      for token in tokenize.generate_tokens(io.StringIO(source).readline)
                      if token.type == tokenize.COMMENT}
    code = (line[:comment_starts.get(number, len(line))].rstrip()
            for number, line in enumerate(lines, start=1)
            if number not in docstring_lines)
    return "\n".join(line for line in code if line)


def _alone_on_its_lines(statement: ast.stmt, lines: list[str]) -> bool:
    """Whether nothing but blanks (and a comment) surround the statement on its lines; `ast`
    counts columns in UTF-8 bytes."""
    before = lines[statement.lineno - 1].encode()[:statement.col_offset]
    after = lines[statement.end_lineno - 1].encode()[statement.end_col_offset:].strip()
    return not before.strip() and (not after or after.startswith(b"#"))


TOOL_PACKAGE = __name__.split(".")[0]


def _local_code(path: Path, found: set[Path] | None = None) -> set[Path]:
    """`path` and the modules it imports from its own folder or its package's (read with `ast`,
    not imported: a search checks this hash before Keras loads). The tool's own package is left
    out: a space may use its types, and a change to the tool is recorded as its version, not as
    another space."""
    found = set() if found is None else found
    found.add(path)
    for module, level in _imports(path):
        if not level and module.split(".")[0] == TOOL_PACKAGE:
            continue
        roots = [path.parents[level - 1]] if level else [path.parent, path.parent.parent]
        for root in roots:
            for candidate in _module_files(root, module):
                if candidate not in found:
                    _local_code(candidate, found)
    return found


def _imports(path: Path) -> list[tuple[str, int]]:
    """(dotted module name, relative level) of each import in `path`; `from a import b` counts
    as both `a` and `a.b`, since `b` may be a module."""
    names = []
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names.append((base, node.level))
            names += [(f"{base}.{alias.name}".lstrip("."), node.level) for alias in node.names]
    return names


def _module_files(root: Path, module: str) -> list[Path]:
    """The source files under `root` that the dotted `module` and its parent packages are."""
    parts = [p for p in module.split(".") if p]
    files = [root / Path(*parts[:i]) / "__init__.py" for i in range(1, len(parts) + 1)]
    if parts:
        files.append((root / Path(*parts)).with_suffix(".py"))
    return [f.resolve() for f in files if f.is_file()]


def available() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.iter_modules(search_spaces.__path__)
        if info.name not in SHARED_MODULES
    )


def _import_file(path: Path) -> ModuleType:
    module_name = f"sweep_user_space_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def is_file_space(name: str) -> bool:
    return name.endswith(".py") or "/" in name


def _module_name(name: str) -> str:
    """The module a space's name (not a file) stands for."""
    if name in available():
        return f"search_spaces.{name}"
    if "." in name:
        return name
    raise SweepError(
        f"Unknown search space {name!r}. Available: {', '.join(available())}; "
        "or give a file (path/to/space.py) or a module (package.module)."
    )


def _source_file(name: str) -> Path:
    """The file holding the space's code, found without running it."""
    if is_file_space(name):
        path = Path(name)
        if path.is_dir():
            raise SweepError(f"Search space {path} is a folder: give the .py file of the space.")
        if not path.is_file():
            raise SweepError(f"Search space file {path} does not exist.")
        return path
    spec = importlib.util.find_spec(_module_name(name))
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"No module named {name!r}")
    return Path(spec.origin)


def _import(name: str) -> ModuleType:
    if is_file_space(name):
        return _import_file(_source_file(name))
    return importlib.import_module(_module_name(name))


@contextlib.contextmanager
def _as_sweep_errors(name: str):
    """Whatever finding or importing a user's space raises becomes a SweepError naming it."""
    try:
        yield
    except SweepError:
        raise
    except ModuleNotFoundError as e:
        raise SweepError(f"Search space {name!r} could not be imported: {e}.") from None
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything on import
        raise SweepError(
            f"Search space {name!r} failed on import: {type(e).__name__}: {e}"
        ) from None


def source_hash(name: str) -> str:
    """A hash of space `name`'s code (`_code_hash`): a search resumed on other code would mix
    two spaces. Found without importing the space: every space imports Keras, and a search
    checks its settings (this hash among them) before Keras loads."""
    with _as_sweep_errors(name):
        return _code_hash(_source_file(name))


def load(name: str) -> Space:
    """The space `name`, a built-in name, a .py file or a dotted module; errors are SweepErrors."""
    with _as_sweep_errors(name):
        module = _import(name)
    if not callable(getattr(module, "build", None)):
        raise SweepError(
            f"Search space {name!r} does not define build(hp, task) -> keras.Model."
        )
    return Space(name, module)


def sample_points(space: Space, task, count: int, seed: int) -> list[tuple]:
    """The default point then `count` random points of `space`: (HyperParameters, model) pairs.

    Building registers the hyperparameters; each random point draws every active one in turn,
    so conditional ones (active only for some parent values) are drawn when active.
    """
    import keras_tuner as kt

    registry = kt.HyperParameters()
    points = [(registry, space.build(registry, task))]
    for i in range(count):
        point = kt.HyperParameters()
        for entry in registry.space:
            point.merge([entry])
            if point.is_active(entry):
                draw_seed = seed * 1000 + i * 100 + len(point.values)
                point.values[entry.name] = entry.random_sample(draw_seed)
        model = space.build(point, task)  # registers conditional entries first seen here
        known = {entry.name for entry in registry.space}
        registry.merge([entry for entry in point.space if entry.name not in known])
        points.append((point, model))
    return points


def describe(space: Space, task) -> list[str]:
    """One line per hyperparameter of `space`: its name, range or choices, and default."""
    seen = {}
    for point, _ in sample_points(space, task, count=8, seed=0):
        for entry in point.space:
            seen.setdefault(entry.name, entry)
    return [describe_entry(entry) for entry in seen.values()]


def allows(entry, value) -> bool:
    """Whether the hyperparameter `entry` (KerasTuner's) can take `value`: one of its choices, or
    a number of its kind in its range and on its steps (`2.0` is no integer: the model's layers
    would refuse it)."""
    config = entry.get_config()
    kind = type(entry).__name__
    if kind == "Choice":
        integers = all(type(v) is int for v in config["values"])
        return (value in config["values"] and type(value) is not bool
                and (type(value) is int or not integers))
    if kind == "Boolean":
        return isinstance(value, bool)
    if kind in ("Int", "Float"):
        number = type(value) is int or (kind == "Float" and type(value) is float)
        return (number and config["min_value"] <= value <= config["max_value"]
                and _on_a_step(value, config))
    return value == config.get("value")


def _on_a_step(value: float, config: dict) -> bool:
    """Whether `value` is a whole number of steps from the minimum (steps multiply on a log
    scale, as KerasTuner samples them)."""
    step, low, high = config.get("step"), config["min_value"], config["max_value"]
    if not step:
        return True
    sampling = config.get("sampling")
    if sampling == "log":
        steps = math.log(value / low) / math.log(step)
    elif sampling == "reverse_log":  # KerasTuner's values: high + low - low * step**i
        steps = math.log((high + low - value) / low) / math.log(step) if value < high else 0
    else:
        steps = (value - low) / step
    return math.isclose(steps, round(steps), abs_tol=1e-6)


def describe_entry(entry) -> str:
    config = entry.get_config()
    kind = type(entry).__name__
    if kind == "Choice":
        what = " | ".join(str(v) for v in config["values"])
    elif kind in ("Int", "Float"):
        what = f"{config['min_value']} .. {config['max_value']}"
        if config.get("step"):
            what += f" step {config['step']}"
        if config.get("sampling") == "log":
            what += " (log)"
    elif kind == "Boolean":
        what = "True | False"
    else:
        what = f"fixed {config.get('value')}"
    conditions = [c.get_config() for c in entry.conditions]
    condition = "".join(f" (when {c['name']} in {c['values']})" for c in conditions)
    return f"{entry.name}: {what}, default {entry.default}{condition}"
