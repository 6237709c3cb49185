"""The KerasTuner and Keras internals the tool relies on: each checked, each in one module."""

import ast
import dataclasses
from pathlib import Path

import pytest

from sweep.engine import compat
from sweep.errors import SweepError

PACKAGE = Path(compat.__file__).resolve().parent.parent


@pytest.mark.parametrize("touch", compat.TOUCHES, ids=str)
def test_the_installed_versions_have_the_internal(touch):
    assert hasattr(touch.owner(), touch.name), touch.why


@pytest.mark.parametrize("touch", compat.TOUCHES, ids=str)
def test_a_missing_internal_stops_the_search_with_its_name_and_version(touch, monkeypatch):
    monkeypatch.setattr(compat, "TOUCHES", (dataclasses.replace(touch, owner=object),))
    with pytest.raises(SweepError, match=rf"{touch.name} in {touch.library} .* {touch.library} \d"):
        compat.check()


def test_only_compat_imports_private_keras_and_keras_tuner_modules():
    private = ("keras.src", "keras_tuner.src")
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(PACKAGE)}: {n}" for n in names
                          if n.startswith(private)]
    assert offenders == []
