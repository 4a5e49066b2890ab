"""The layers of ARCHITECTURE.md hold: every module is placed in a layer, imports (top-level and
inside functions alike) form no circle, the service never touches a Flask request, and every
module reads in one sitting. `lint-imports` (run by `make test`) checks the layers themselves."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "keyvault"
MOST_LINES = 350


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every keyvault module `name` imports, wherever the import statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            named = [f"{base}.{alias.name}" for alias in node.names]
            targets.update(module for module in named if module in modules)
            if any(module not in modules for module in named):
                targets.add(base)
    return {target for target in targets if target in modules and target != name}


def _layers() -> list[dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [contract for contract in config["tool"]["importlinter"]["contracts"]
            if contract["type"] == "layers"]


def test_every_module_is_placed_in_a_layer():
    """A module of a package with a contract must be named in it; any other must sit inside a
    module that is (a contract's `exhaustive` makes lint-imports say the same of containers)."""
    placed, containers = set(), set()
    for contract in _layers():
        containers.update(contract["containers"])
        for container in contract["containers"]:
            for layer in contract["layers"]:
                placed.update(f"{container}.{part.strip()}"
                              for part in layer.replace(":", "|").split("|"))
    unplaced = []
    for module in _modules():
        parent = module.rpartition(".")[0]
        if module == "keyvault" or module in placed:
            continue
        if parent in containers or not any(module.startswith(f"{layer}.") for layer in placed):
            unplaced.append(module)
    assert not unplaced, f"modules in no layer of pyproject.toml's contracts: {unplaced}"


def test_no_import_circle_even_inside_functions():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (circle := visit(target)):
                return circle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            circle = visit(module)
            assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_service_never_reads_a_request():
    offenders = []
    for name, path in _modules().items():
        if not name.startswith("keyvault.service"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "flask" and any(
                    alias.name in {"request", "session", "g"} for alias in node.names):
                offenders.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.Attribute) and node.attr == "request" and isinstance(
                    node.value, ast.Name) and node.value.id == "flask":
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, f"the service reads a request: {offenders}"


def test_every_module_reads_in_one_sitting():
    long = {name: count for name, path in _modules().items()
            if (count := len(path.read_text().splitlines())) > MOST_LINES}
    assert not long, f"modules over {MOST_LINES} lines: {long}"


def test_lint_imports_keeps_every_contract():
    linter = Path(sys.executable).with_name("lint-imports")
    run = subprocess.run([str(linter), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]


def test_a_function_level_import_of_keyvault_says_why():
    """Imports of keyvault modules stand at the top of the module; one inside a function is
    allowed only with its reason on the same line (and the circle-finder above counts it)."""
    unexplained = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.Import | ast.ImportFrom) or node.col_offset == 0:
                continue
            module = getattr(node, "module", None) or ""
            ours = getattr(node, "level", 0) or module.startswith("keyvault") or any(
                alias.name.startswith("keyvault") for alias in node.names)
            if ours and "#" not in lines[node.lineno - 1]:
                unexplained.append(f"{name}:{node.lineno}")
    assert not unexplained, f"function-level imports of keyvault without a reason: {unexplained}"
