"""Find, load and describe search spaces (modules of `search_spaces/`)."""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import search_spaces
from sweep.errors import SweepError

SHARED_MODULES = {"blocks"}


@dataclass(frozen=True)
class Space:
    name: str
    module: ModuleType

    @property
    def description(self) -> str:
        return self.module.DESCRIPTION

    def build(self, hp, task):
        return self.module.build(hp, task)

    def source_hash(self) -> str:
        """A hash of the space's code: a search resumed with other code would mix two spaces."""
        return hashlib.sha256(Path(self.module.__file__).read_bytes()).hexdigest()


def available() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.iter_modules(search_spaces.__path__)
        if info.name not in SHARED_MODULES
    )


def load(name: str) -> Space:
    names = available()
    if name not in names:
        raise SweepError(f"Unknown search space {name!r}. Available: {', '.join(names)}.")
    module = importlib.import_module(f"search_spaces.{name}")
    missing = [attr for attr in ("DESCRIPTION", "build") if not hasattr(module, attr)]
    if missing:
        raise SweepError(f"Search space {name!r} does not define {', '.join(missing)}.")
    return Space(name, module)
