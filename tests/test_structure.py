"""The package's layering, checked by walking its imports."""

from __future__ import annotations

import ast
import subprocess
import sys

from helpers.stages import REPO

PACKAGE = REPO / "kws_research"


def imports(path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


def test_importing_the_models_loads_no_training_code():
    code = (
        "import sys, kws_research.models; "
        "print(sorted(m for m in sys.modules if m.startswith('kws_research.training')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    for path in (PACKAGE / "models").glob("*.py"):
        assert not [m for m, _ in imports(path) if m.startswith("kws_research.training")], path.name


def test_no_module_imports_a_private_name_of_another():
    offenders = [
        f"{path.relative_to(REPO)}: {module}.{name}"
        for path in PACKAGE.rglob("*.py")
        for module, names in imports(path)
        if module.startswith("kws_research")
        for name in names
        if name.startswith("_")
    ]
    assert not offenders
