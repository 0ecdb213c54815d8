"""The package's layering, checked by walking its imports."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
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


# The allowed order, bottom first; written once. A module may import its own package and
# any package of a lower layer: never one of its own layer (sideways) or above (upwards),
# at the top of a file or inside a function.
LAYERS = (
    ("errors", "contract", "paths", "labels", "serialization", "devices"),
    ("ownership", "locks", "metrics", "schema", "databases"),
    ("processes", "config"),
    ("data", "models"),
    ("coreml",),  # converts models: its front end's convertible form comes from models
    ("tracking",),
    ("streaming",),
    ("training",),
    ("exporting",),
    ("sweeping",),
    ("cli",),
    ("prepare", "train", "evaluate", "mine", "export", "sweep", "__main__"),
)
LAYER = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def unit_of(module: str) -> str:
    """The package (or top-level module) of ``kws_research.<unit>[.rest]``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def own_imports(path) -> list[tuple[str, int, bool]]:
    """(imported kws_research module, line, inside a function) of every import in a file
    (imports for type checkers only count as top-level)."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            top.update(id(child) for child in node.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kws_research"):
            names = [node.module] if node.module != "kws_research" else [f"kws_research.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("kws_research")]
        else:
            continue
        found.extend((name, node.lineno, id(node) not in top) for name in names)
    return found


def module_name(path, root=REPO) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def layering_violations(paths, root=REPO) -> list[str]:
    found = []
    for path in paths:
        source = unit_of(module_name(path, root))
        for target_module, line, _ in own_imports(path):
            target = unit_of(target_module)
            if target == source or target == "__init__":
                continue
            if source not in LAYER or target not in LAYER:
                found.append(f"{path.name}:{line}: {source} or {target} has no layer in LAYERS")
            elif LAYER[target] >= LAYER[source]:
                way = "sideways" if LAYER[target] == LAYER[source] else "upwards"
                found.append(f"{module_name(path, root)}:{line} imports {target_module} ({way})")
    return found


def test_no_package_imports_another_sideways_or_upwards_even_inside_a_function():
    assert not layering_violations(sorted(PACKAGE.rglob("*.py")))


def test_the_layering_check_sees_a_sideways_import_inside_a_function(tmp_path):
    planted = tmp_path / "kws_research" / "data" / "planted.py"
    planted.parent.mkdir(parents=True)
    planted.write_text("def load():\n    from kws_research.models import build_model\n\n    return build_model\n")
    assert layering_violations([planted], tmp_path) == [
        "kws_research.data.planted:2 imports kws_research.models (sideways)"
    ]
    planted.write_text("def load():\n    from kws_research.exporting import stage\n\n    return stage\n")
    assert layering_violations([planted], tmp_path) == [
        "kws_research.data.planted:2 imports kws_research.exporting (upwards)"
    ]


def _explained(lines: list[str], line: int) -> bool:
    """A comment on the import's line, or on the line above its block of imports."""
    index = line - 1
    if "#" in lines[index]:
        return True
    while index > 0 and lines[index - 1].strip().startswith(("from ", "import ")):
        index -= 1
    return index > 0 and lines[index - 1].strip().startswith("#")


def test_function_level_imports_of_the_package_say_why():
    """Only where start-up time needs them (a stage answers --help and bad overrides before
    TensorFlow loads), each with a comment."""
    missing = [
        f"{path.relative_to(REPO)}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for _, line, inside in own_imports(path)
        if inside and not _explained(path.read_text().splitlines(), line)
    ]
    assert not missing


@pytest.mark.slow  # a subprocess that imports each stage
def test_a_wrong_run_id_is_one_line_before_tensorflow_loads(tmp_path):
    """export, evaluate and mine look the run up before they import a model: a mistyped id
    answers in about a second, not after TensorFlow's import."""
    code = f"""
import sys
from omegaconf import OmegaConf
from kws_research.config import compose
from kws_research.errors import KwsError
from kws_research.evaluate import evaluate_stage
from kws_research.exporting.options import preflight
from kws_research.mine import mine_stage

where = ["run_id=deadbeef", "tracking.uri=sqlite:///{tmp_path}/mlruns.db"]
calls = [
    lambda: preflight(OmegaConf.to_container(compose("export", where), resolve=True)),
    lambda: evaluate_stage(compose("evaluate", where)),
    lambda: mine_stage(compose("mine", where)),
]
for call in calls:
    try:
        call()
    except KwsError as exc:
        print(str(exc).split(";")[0])
print("tensorflow" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.splitlines() == [
        "run_id: no MLflow run 'deadbeef' in sqlite:///" + f"{tmp_path}/mlruns.db"
    ] * 3 + ["False"], result.stderr[-2000:]
