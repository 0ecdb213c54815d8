"""The package as users install it: a non-editable install runs every stage's config from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from helpers.stages import REPO, last_json


def test_every_python_package_is_listed_for_the_wheel():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "kws_research").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
    shipped = {"kws_research.conf." + ".".join(p.relative_to(REPO / "conf").parts) for p in (REPO / "conf").rglob("*/")}
    assert shipped <= listed, f"add {sorted(shipped - listed)} to [tool.setuptools] packages and package-data"


def _source_copy(folder):
    """What a source distribution holds: the package, its configs and sweeps, pyproject, README."""
    for name in ("kws_research", "conf", "sweeps"):
        shutil.copytree(REPO / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, folder / name)


@pytest.mark.slow  # builds a wheel
def test_the_wheel_builds_without_a_warning_and_ships_every_config(tmp_path):
    import zipfile

    source, out = tmp_path / "src", tmp_path / "dist"
    _source_copy(source)
    out.mkdir()
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))",
        ]
        + [str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    warnings = [line for line in (build.stdout + build.stderr).splitlines() if "Warning" in line]
    assert not warnings, warnings[:5]
    names = zipfile.ZipFile(out / build.stdout.strip().splitlines()[-1]).namelist()
    configs = {f"kws_research/conf/{p.relative_to(REPO / 'conf').as_posix()}" for p in (REPO / "conf").rglob("*.yaml")}
    sweeps = {f"kws_research/sweeps/{p.name}" for p in (REPO / "sweeps").glob("*.yaml")}
    assert configs | sweeps <= set(names), sorted((configs | sweeps) - set(names))[:5]


@pytest.mark.slow  # builds and installs a wheel
def test_a_non_editable_install_runs_prepare_from_another_folder(tmp_path, tone_root):
    source = tmp_path / "src"
    _source_copy(source)
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    shutil.rmtree(source)  # nothing may still point into the source tree
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site), TF_CPP_MIN_LOG_LEVEL="3")
    where = subprocess.run(
        [sys.executable, "-c", "import kws_research.paths as p; print(p.CONF_DIR)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert where == str(site / "kws_research" / "conf")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kws_research.prepare",
            "dataset=speech_commands",
            f"dataset.root={tone_root}",
            "dataset.commands=[yes,no,up]",
            f"dataset.cache_dir={tmp_path}/cache",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert last_json(result.stdout)["classes"] == ["silence", "unknown", "yes", "no", "up"]
    sweeps = subprocess.run(
        [sys.executable, "-m", "kws_research.sweep", "sweep=nope"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "'quick'" in sweeps.stderr  # the shipped sweep files are found too


def test_make_ui_opens_the_store_the_stages_use():
    """`make ui` ignored MLFLOW_TRACKING_URI and made an empty mlruns.db in the current folder."""
    if shutil.which("make") is None:
        pytest.skip("no make here")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    for uri, expected in (
        (None, "sqlite:///mlruns.db"),
        ("sqlite:////tmp/elsewhere.db", "sqlite:////tmp/elsewhere.db"),
    ):
        run_env = dict(env, MLFLOW_TRACKING_URI=uri) if uri else env
        dry = subprocess.run(["make", "-n", "ui"], cwd=REPO, env=run_env, capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0 and f"--backend-store-uri '{expected}'" in dry.stdout, dry.stdout + dry.stderr


@pytest.mark.slow  # starts the MLflow UI and waits for its job runner
def test_make_ui_leaves_no_process_behind_after_sigterm(tmp_path):
    """The UI's server and job-runner children end with it (`make ui`, then SIGTERM)."""
    import signal
    import time
    import urllib.request

    from helpers.servers import free_port

    if shutil.which("make") is None or sys.platform != "linux":
        pytest.skip("needs make and /proc")
    store = tmp_path / "ui-store.db"
    port = free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{store}", UI_PORT=str(port))
    ui = subprocess.Popen(["make", "ui"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def descendants() -> set[int]:
        parents = {}
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, frontier = set(), {ui.pid}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
            found |= frontier
        return found

    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                break
            except OSError:
                time.sleep(1)
        time.sleep(5)  # its job runner starts its consumers
        children = descendants()
        assert len(children) >= 3, children  # mlflow ui, its server, its job runner
        ui.send_signal(signal.SIGTERM)
        ui.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(os.path.exists(f"/proc/{pid}") for pid in children) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]
    finally:
        ui.kill()
