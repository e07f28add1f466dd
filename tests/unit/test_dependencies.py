"""pyproject.toml's dependencies say what src/asqsd imports: nothing undeclared, nothing unused.

A third-party module imported directly but reached only through another package's dependencies
(``yarl`` through aiohttp, ``botocore`` through aiobotocore) works until that package drops or
changes it; declaring it pins the contract. Imports are read from the source (every ``import``,
also the lazy ones inside functions), and mapped to distributions the way the installed
environment does (``importlib.metadata.packages_distributions``).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / "asqsd"


# Extras that src imports from, lazily, only when a setting asks for them.
RUNTIME_EXTRAS = ("otel",)


def declared_distributions() -> set[str]:
    """The runtime dependencies of pyproject.toml (and its runtime extras), as canonical names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in RUNTIME_EXTRAS:
        specs += project["optional-dependencies"][extra]
    return {canonicalize_name(Requirement(spec).name) for spec in specs}


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the source files importing it, for every module outside the stdlib."""
    found: dict[str, set[str]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("asqsd", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_module_is_declared() -> None:
    """Each third-party module src imports comes from a distribution pyproject.toml declares."""
    declared = declared_distributions()
    providers = packages_distributions()
    problems = []
    for module, files in sorted(third_party_imports().items()):
        distributions = {canonicalize_name(d) for d in providers.get(module, [])}
        if not distributions:
            problems.append(f"{module} (imported by {', '.join(sorted(files))}) is not installed")
        elif not distributions & declared:
            problems.append(
                f"{module} (imported by {', '.join(sorted(files))}) comes from "
                f"{', '.join(sorted(distributions))}, not declared in pyproject.toml"
            )
    assert not problems, "\n".join(problems)


def test_every_declared_dependency_is_imported() -> None:
    """No runtime dependency is declared that src never imports (it would only cost installs)."""
    providers = packages_distributions()
    used = {canonicalize_name(d) for module in third_party_imports() for d in providers.get(module, [])}
    assert declared_distributions() - used == set()


def test_the_scan_sees_direct_and_lazy_imports() -> None:
    """The scan is not vacuous: it finds a top-level import and one made inside a function."""
    found = third_party_imports()
    assert "src/asqsd/config.py" in found["yaml"]
    assert "src/asqsd/clients/sqs/factory.py" in found["aiobotocore"]  # imported inside open_sqs()
    assert not {"json", "asyncio", "asqsd"} & set(found)
