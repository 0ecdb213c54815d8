"""The second round of bad input (issue 22): every value typed by one mechanism, sweep
fields with `+`, stores that cannot work, and refusals before any training."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
from helpers.data import tiny_overrides
from helpers.stages import run_stage
from helpers.sweeps import data_args, write_sweep

from kws_research.config import compose
from kws_research.errors import ConfigError, KwsError
from kws_research.schema import INT, LIST, NUMBER, Spec, check_value, spec_of_annotation
from kws_research.sweeping import factories
from kws_research.sweeping.coordinator import run_sweep
from kws_research.sweeping.definition import load
from kws_research.tracking import store


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    "config_name, override, message",
    [
        ("train", "augment.time_shift_ms=abc", "augment.time_shift_ms: 'abc' is not a number in [0, 1000]"),
        ("train", "trainer.epochs=true", "trainer.epochs: True is not an integer >= 1"),
        ("train", "trainer.epochs=2.5", "trainer.epochs: 2.5 is not an integer >= 1"),
        ("train", "+foo=1", "foo: no such key in any shipped config"),
        ("train", "+trainer.foo=1", "trainer.foo: no such key in any shipped config"),
        ("train", "stream.snr_db=[-100,-200]", "stream.snr_db[0]: -100 is not a number in [-20, 60]"),
        ("train", "dataset.commands=5", "dataset.commands: 5 is not a list of a string"),
        ("train", "openset.gate=maybe", "openset.gate: 'maybe' is not true or false"),
        ("mine", "minutes=abc", "minutes: 'abc' is not a number >= 0.01"),
        ("mine", "threshold=2", "threshold: 2 is not a number in [0, 1] or null"),
        ("export", "verify_clips=-5", "verify_clips: -5 is not an integer >= 1 or null"),
        ("export", "tolerance.fp16=abc", "tolerance.fp16: 'abc' is not a number in [0, 1]"),
        ("prepare", "workers=0", "workers: 0 is not an integer >= 1 or null"),
        ("export", "output_dir=/", "output_dir: '/' is the file-system root"),
        ("export", "output_dir=/etc", "output_dir: '/etc' is the system folder /etc"),
        ("export", "output_dir=/usr/share/kws", "output_dir: '/usr/share/kws' is inside the system folder /usr"),
        ("prepare", "dataset.cache_dir=/", "dataset.cache_dir: '/' is the file-system root"),
        ("train", "dataset.unknown_folder=/", "dataset.unknown_folder: '/' is the file-system root"),
        ("train", "dataset.root=/proc", "dataset.root: '/proc' is the system folder /proc"),
        ("mine", "output=/etc/mined", "output: '/etc/mined' is inside the system folder /etc"),
        ("train", "stream.hop_ms=7", "stream.hop_ms: 7 is not an integer in [10, 1000]"),
        ("train", "stream.target_fa_per_hour=0", "stream.target_fa_per_hour: 0 is not a number >= 0.01"),
        ("train", "stream.target_fa_per_hour=1e-9", "stream.target_fa_per_hour: 1e-09 is not a number >= 0.01"),
        ("export", "registry.name=../evil/x", "registry.name: '../evil/x' is not a name of letters, digits"),
        ("prepare", "dataset.generator.speakers=0", "dataset.generator.speakers: 0 is not an integer >= 3"),
        ("prepare", "dataset.generator.speakers=2", "dataset.generator.speakers: 2 is not an integer >= 3"),
        ("prepare", "dataset.generator.validation_fraction=0.9", "dataset.generator.validation_fraction: 0.9 is"),
    ],
)
def test_every_value_is_checked_against_its_kind_when_composed(config_name, override, message):
    with pytest.raises(ConfigError) as caught:
        compose(config_name, [override])
    assert str(caught.value).startswith(message)


def test_system_folders_are_refused_by_the_stage_writing_nothing(tmp_path):
    """`export output_dir=/etc` wrote 8 entries there and `dataset.cache_dir=/` created
    /prepared; both are one line now, before any work (a link to /etc counts as /etc)."""
    link = tmp_path / "looks-like-mine"
    link.symlink_to("/etc")
    before = sorted(p.name for p in Path("/etc").iterdir())
    for stage, override, said in (
        ("export", f"output_dir={link}", "is the system folder /etc"),
        ("prepare", "dataset.cache_dir=/", "is the file-system root"),
    ):
        result = run_stage(stage, override, cwd=tmp_path, timeout=120)
        assert result.returncode == 2, result.stderr[-2000:]
        assert len(_error_lines(result)) == 1 and said in _error_lines(result)[0], result.stderr[-2000:]
    assert sorted(p.name for p in Path("/etc").iterdir()) == before and not Path("/prepared").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["looks-like-mine"]


def test_kws_without_a_stage_is_an_error_on_stderr(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "kws_research"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert (
        result.stderr.startswith("error: kws: no stage given; stages: prepare, train") and "usage: kws" in result.stderr
    )
    helped = subprocess.run([sys.executable, "-m", "kws_research", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: kws") and helped.stderr == ""


def test_a_missing_config_dir_is_one_line(tmp_path):
    for args in (["--config-dir", str(tmp_path / "missing")], [f"--config-dir={tmp_path / 'missing'}"]):
        result = run_stage("train", *args, cwd=tmp_path, timeout=120)
        assert result.returncode == 2 and _error_lines(result) == [
            f"error: --config-dir: {tmp_path / 'missing'} is not a folder; give a folder of extra configs"
        ], result.stderr[-2000:]


def test_values_of_the_right_kind_and_group_choices_pass():
    cfg = compose("train", ["model=ds_cnn", "model.dropout=0.25", "+experiment=openset", "stream.snr_db=[10,0]"])
    assert cfg.model.dropout == 0.25 and list(cfg.stream.snr_db) == [10, 0]
    assert compose("mine", ["minutes=0.5", "threshold=0.5"]).minutes == 0.5  # a number where the default is 30


def test_specs_from_defaults_and_annotations():
    check_value("k", 3, INT(1))
    check_value("k", [0.5, 1], LIST(NUMBER(0, 1)))
    for value, spec in [
        (True, INT()),
        (float("nan"), NUMBER()),
        ("x", Spec("str", choices=("a",))),
        ([2], LIST(INT(3))),
    ]:
        with pytest.raises(ConfigError):
            check_value("k", value, spec)
    assert spec_of_annotation(int | None) == Spec("int", nullable=True)
    assert spec_of_annotation(list[str]).item == Spec("str")


def test_the_train_cli_refuses_bad_values_and_unread_keys_in_one_line(tone_root, tmp_path):
    for override, message in [("trainer.epochs=true", "trainer.epochs"), ("+foo=1", "foo: no such key")]:
        result = run_stage("train", *tiny_overrides(tone_root, tmp_path), override, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(_error_lines(result)) == 1 and _error_lines(result)[0].startswith(f"error: {message}")
    assert not (tmp_path / "mlruns.db").exists()


def test_plus_sweep_fields_are_the_plain_fields(tmp_path):
    sweep = write_sweep(tmp_path)
    definition = load([f"sweep={sweep}", "+n_trials=1", "++workers=1", "+constraints.max_false_command_rate=0.2"])
    assert definition.n_trials == 1 and definition.workers == 1
    assert definition.constraints.max_false_command_rate == 0.2 and "+n_trials" not in definition.config
    assert load([f"sweep={sweep}", "metrics=test_accuracy"]).metrics == ["test_accuracy"]  # a list of one


@pytest.mark.parametrize(
    "override, message",
    [
        ("timeout=abc", "timeout: 'abc' is not a number >= 0.001 or null"),
        ("n_trials=true", "n_trials: True is not an integer >= 1"),
        ("constraints.max_params=abc", "constraints.max_params: 'abc' is not a number or null"),
        ("directions=[up]", "directions[0]: 'up' is not one of maximize, minimize"),
        ("~n_trials", "n_trials: a sweep field cannot be deleted"),
    ],
)
def test_bad_sweep_fields_are_refused_when_loaded(tmp_path, override, message):
    with pytest.raises(KwsError) as caught:
        load([f"sweep={write_sweep(tmp_path)}", override])
    assert str(caught.value).startswith(message)


def test_optuna_options_are_checked_against_their_type_hints():
    with pytest.raises(ConfigError, match=r"^sampler.n_startup_trials: 'abc' is not an integer"):
        factories.sampler({"name": "tpe", "n_startup_trials": "abc"}, 0, [])
    with pytest.raises(ConfigError, match=r"^pruner.n_warmup_steps: 'x' is not an integer"):
        factories.pruner({"name": "median", "n_warmup_steps": "x"}, False)
    assert factories.sampler({"name": "tpe", "n_startup_trials": 3}, 0, [])._n_startup_trials == 3


@pytest.mark.parametrize(
    "override, key",
    [
        ("+constraints.max_false_command_rate=0.2", "constraints.max_false_command_rate"),
        ("metrics=abc", "metrics"),
    ],
)
def test_sweep_constraints_and_metrics_given_with_plus_are_checked_before_any_study(tone_root, tmp_path, override, key):
    with pytest.raises(KwsError, match=f"^{key}: no run of this sweep produces"):
        run_sweep(load([f"sweep={write_sweep(tmp_path)}", override, *data_args(tone_root, tmp_path)]))
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlruns.db").exists()


def test_bad_optuna_sampler_options_leave_no_study_and_no_run(tone_root, tmp_path):
    sweep = write_sweep(tmp_path, sampler={"name": "tpe", "n_startup_trials": "abc"})
    with pytest.raises(ConfigError, match="sampler.n_startup_trials"):
        run_sweep(load([f"sweep={sweep}", *data_args(tone_root, tmp_path)]))
    assert not (tmp_path / "mlruns.db").exists()
    if (tmp_path / "optuna.db").exists():
        rows = sqlite3.connect(tmp_path / "optuna.db").execute("select count(*) from studies").fetchone()
        assert rows == (0,)


def test_a_journal_storage_that_is_a_folder_is_one_line(tmp_path):
    with pytest.raises(KwsError, match=r"^storage: journal:.* is a folder; name a file in it"):
        factories.storage(f"journal:{tmp_path}", None)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_stores_that_cannot_work_are_one_line_each(tmp_path):
    corrupt = tmp_path / "mlruns.db"
    connection = sqlite3.connect(corrupt)
    connection.execute("create table t (x)")
    connection.executemany("insert into t values (?)", [("x" * 500,)] * 200)
    connection.commit()
    connection.close()
    data = bytearray(corrupt.read_bytes())
    data[4096:12288] = b"\xff" * 8192  # pages of the table overwritten
    corrupt.write_bytes(bytes(data))
    with pytest.raises(KwsError, match=r"^tracking.uri: .*mlruns.db is not a readable database"):
        store.client_for({"uri": f"sqlite:///{corrupt}"})
    assert corrupt.read_bytes() == bytes(data)  # left as it was
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(KwsError, match="not a readable database"):
        store.client_for({"uri": f"sqlite:///{garbage}"})
    port = _closed_port()
    for uri in (f"postgresql://u@127.0.0.1:{port}/mlflow", f"postgresql+psycopg2://u@127.0.0.1:{port}/mlflow"):
        with pytest.raises(KwsError, match=rf"^tracking.uri: database server 127.0.0.1:{port} .* is not reachable"):
            store.client_for({"uri": uri})
    with pytest.raises(KwsError, match=r"^storage: database server 127.0.0.1"):
        factories.storage(f"postgresql://u@127.0.0.1:{port}/optuna", None)
    with pytest.raises(KwsError, match=rf"^tracking.uri: {tmp_path} is a folder, not a database file"):
        store.client_for({"uri": f"sqlite:///{tmp_path}"})
    theirs = tmp_path / "inventory.db"
    connection = sqlite3.connect(theirs)
    connection.execute("create table items (name text)")
    connection.commit()
    connection.close()
    kept = theirs.read_bytes()
    with pytest.raises(KwsError, match=r"^tracking.uri: .*inventory.db is a SQLite database with tables of its own"):
        store.client_for({"uri": f"sqlite:///{theirs}"})
    with pytest.raises(KwsError, match=r"^storage: .*inventory.db is a SQLite database with tables of its own"):
        factories.storage(f"sqlite:///{theirs}", None)
    assert theirs.read_bytes() == kept  # not one MLflow or Optuna table added
    with pytest.raises(KwsError, match=r"^tracking.uri: 'garbage' is not a store URL"):
        store.client_for({"uri": "garbage"})


@pytest.mark.slow  # real servers; each waits out a 10 s and a 2 s connect timeout
@pytest.mark.parametrize("kind", ["silent", "http"])
def test_a_port_that_is_no_postgresql_server_is_one_line_not_a_hang(kind, tone_root, tmp_path):
    """libpq waited 16+ minutes on a port that accepts and never answers, deaf to SIGTERM;
    now every store connection has a connect timeout and the check says what it met."""
    from helpers.servers import impostor

    from kws_research.databases import DATABASE_CONNECT_TIMEOUT_S

    with impostor(kind) as port:
        url = f"postgresql://u:p@127.0.0.1:{port}/db"
        with pytest.raises(
            KwsError,
            match=rf"^storage: 127.0.0.1:{port} did not answer as a PostgreSQL server within "
            rf"{DATABASE_CONNECT_TIMEOUT_S} s",
        ):
            factories.storage(url, None)
        # a user's own connect_timeout is the one used and the one named (and keeps the test short)
        short = f"{url}?connect_timeout=2"
        tiny = tiny_overrides(tone_root, tmp_path)  # the data is built before the store is opened
        result = run_stage("train", *tiny, f"tracking.uri='{short}'", cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: tracking.uri: 127.0.0.1:{port} did not answer as a PostgreSQL server within 2 s"), (
        last
    )


def test_every_database_url_is_opened_with_a_connect_timeout():
    from kws_research.databases import DATABASE_CONNECT_TIMEOUT_S, database_url

    assert database_url("postgresql+psycopg2://u:p@h/db").endswith(f"?connect_timeout={DATABASE_CONNECT_TIMEOUT_S}")
    assert database_url("postgresql+psycopg2://u:p@h/db?connect_timeout=3").endswith("connect_timeout=3")
    assert database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_a_bare_postgresql_url_uses_the_installed_driver():
    from kws_research.databases import with_driver

    url = with_driver("postgresql://u@host/db")
    assert url in ("postgresql://u@host/db", "postgresql+psycopg2://u@host/db")
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        assert url == "postgresql+psycopg2://u@host/db"
    assert with_driver("sqlite:///x.db") == "sqlite:///x.db"


def test_workers_are_capped_at_the_trial_budget(tmp_path, caplog):
    import logging
    import os

    from kws_research.sweeping.coordinator import worker_count

    sweep = write_sweep(tmp_path)
    assert worker_count(load([f"sweep={sweep}", "workers=8", "n_trials=2"]), 2) == 2
    cores = os.cpu_count() or 1
    with caplog.at_level(logging.WARNING):
        assert worker_count(load([f"sweep={sweep}", f"workers={cores + 1}", "n_trials=50"]), 50) == cores + 1
    assert f"more than the {cores} CPU core(s)" in caplog.text


@pytest.mark.slow  # a real stage against a port that never answers
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_stage_waiting_on_a_silent_database_ends_at_once_on_a_signal(signal_name, tone_root, tmp_path):
    """libpq's connect holds off Python's signal handlers until its timeout: the stage sat
    there 10 s after SIGTERM (16+ minutes before the timeout existed)."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    from helpers.data import tiny_overrides

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(120)
    port = listener.getsockname()[1]
    overrides = [o for o in tiny_overrides(tone_root, tmp_path) if not o.startswith("tracking.uri=")]
    stage = subprocess.Popen(
        [sys.executable, "-m", "kws_research.train", *overrides, f"tracking.uri=postgresql://u:p@127.0.0.1:{port}/db"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        held, _ = listener.accept()  # the stage is now in the driver's connect
        time.sleep(0.5)
        sent = time.monotonic()
        stage.send_signal(getattr(signal, signal_name))
        _, stderr = stage.communicate(timeout=60)
        waited = time.monotonic() - sent
        held.close()
    finally:
        stage.kill()
        listener.close()
    assert stage.returncode != 0 and "Traceback" not in stderr, stderr[-2000:]
    assert waited < 5, f"{signal_name} took {waited:.1f} s to end the stage"
    assert not (tmp_path / "mlruns.db").exists()


@pytest.mark.parametrize("word", ["don't", "ja!", "hey:siri", "a/b", " yes", ""])
def test_a_command_name_mlflow_cannot_log_is_refused_when_the_task_is_read(word):
    """Refused before any work, not when the calibrated thresholds are logged at the end of
    the run: what MLflow refuses (don't, ja!), what it refuses on Windows (a colon), and
    names no folder has (a slash, blanks)."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_metric_name

    from kws_research.data.dataset import task_spec
    from kws_research.streaming.detector import command_threshold_key

    with pytest.raises(KwsError, match=r"^dataset\.commands: .* cannot name its detector threshold in MLflow"):
        task_spec({"commands": ["yes", word]})
    if word in ("don't", "ja!"):
        with pytest.raises(MlflowException):
            _validate_metric_name(command_threshold_key(word))
    for accepted in ("hey siri", "turn_on", "ok-go", "v1.2", "stopp\u00e9"):
        assert task_spec({"commands": ["yes", accepted]}).commands == ("yes", accepted)
        _validate_metric_name(command_threshold_key(accepted))
