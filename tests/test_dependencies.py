"""pyproject.toml declares what the code and the tests import, and nothing it does not use."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions

from packaging.requirements import Requirement

from tests.conftest import PROJECT_ROOT

PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _names(requirements: list[str]) -> set[str]:
    return {Requirement(r).name.lower().replace("_", "-") for r in requirements}


# Used without an import of its own: WTForms' Email() validator calls it.
IMPORTED_BY_ANOTHER = {"email-validator"}


def _top_level_imports(*folders: str) -> set[str]:
    found = set()
    for path in (p for folder in folders for p in (PROJECT_ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"keyvault", "keyvault_client", "tests", "bench",
                                                   "__future__"}


def _distributions(modules: set[str]) -> dict[str, set[str]]:
    installed = packages_distributions()
    return {module: {d.lower().replace("_", "-") for d in installed.get(module, [module])}
            for module in modules}


def test_every_import_of_the_app_is_a_dependency():
    declared = _names(PROJECT["dependencies"]) | _names(PROJECT["optional-dependencies"]["postgres"])
    missing = {m: d for m, d in _distributions(_top_level_imports("keyvault", "migrations")).items()
               if not d & declared}
    assert missing == {}


def test_every_import_of_the_tests_is_declared():
    extras = PROJECT["optional-dependencies"]
    declared = (_names(PROJECT["dependencies"]) | _names(extras["postgres"])
                | _names(extras["test"]))
    missing = {m: d for m, d in _distributions(_top_level_imports("tests")).items()
               if not d & declared}
    assert missing == {}


def test_no_dependency_goes_unused():
    """Each runtime dependency is imported by the app (under its own module name or another)."""
    used = set().union(*_distributions(_top_level_imports("keyvault", "migrations")).values())
    unused = _names(PROJECT["dependencies"]) - used - IMPORTED_BY_ANOTHER
    assert unused == set()


def test_package_data_names_only_files_that_exist():
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        folder = PROJECT_ROOT / PYPROJECT["tool"]["setuptools"]["package-dir"].get(
            package, package.replace(".", "/"))
        for pattern in patterns:
            assert list(folder.glob(pattern)), (package, pattern)
