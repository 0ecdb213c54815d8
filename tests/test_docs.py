"""The documentation: the site builds with broken links refused, the README stays a
front door, and every test the fault table names exists."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys

from helpers.stages import REPO


def _build(folder, tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env, timeout=300)


def test_the_site_builds_strictly_and_a_broken_link_fails_it(tmp_path):
    result = _build(REPO, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "failure-modes" / "index.html").is_file()
    copy = tmp_path / "copy"
    shutil.copytree(REPO / "docs", copy / "docs")
    shutil.copy(REPO / "mkdocs.yml", copy / "mkdocs.yml")
    with open(copy / "docs" / "index.md", "a") as page:
        page.write("\nSee [a page that is not there](nowhere.md).\n")
    broken = _build(copy, tmp_path / "b")
    assert broken.returncode != 0 and "nowhere.md" in broken.stderr


def test_the_readme_is_a_front_door_that_links_every_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md"))
    missing = [p for p in pages if p != "index.md" and f"docs/{p}" not in readme]
    assert not missing
    assert "make sweep" in readme and "make test" in readme


def _tests_in(path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}


def test_every_test_the_fault_table_names_exists():
    table = (REPO / "docs" / "failure-modes.md").read_text()
    named = set(re.findall(r"`(test_\w+)::(test_\w+)", table))
    same = re.findall(r"\| same \|", table)
    assert len(named) >= 50 and same
    missing = [f"{m}::{name}" for m, name in sorted(named) if name not in _tests_in(REPO / "tests" / f"{m}.py")]
    assert not missing
