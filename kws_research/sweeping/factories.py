"""Samplers, pruners and storages from the sweep definition."""

from __future__ import annotations

import builtins
import collections.abc
import inspect
import logging
import typing
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

from kws_research import databases
from kws_research.errors import ConfigError, KwsError
from kws_research.schema import check_value, spec_of_annotation
from kws_research.sweeping.space import Dimension

log = logging.getLogger(__name__)

SAMPLERS = {
    "tpe": "TPESampler",
    "random": "RandomSampler",
    "cmaes": "CmaEsSampler",
    "nsga2": "NSGAIISampler",
    "nsga3": "NSGAIIISampler",
    "grid": "GridSampler",
    "qmc": "QMCSampler",
}
PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
    "patient": "PatientPruner",
    "none": "NopPruner",
}


def _kwargs(cfg: Mapping, key: str) -> tuple[str, dict]:
    options = dict(cfg or {})
    name = str(options.pop("name", "")).lower()
    return name, options


def check_options(key: str, cls: type, options: Mapping) -> None:
    """Each option against the type hint of ``cls``'s constructor (``sampler.n_startup_trials=abc``
    is refused here, not by every trial's sampling)."""
    parameters = inspect.signature(cls).parameters
    for name, value in options.items():
        hint = _hint(parameters[name].annotation) if name in parameters else None
        if hint is not None:
            check_value(f"{key}.{name}", value, spec_of_annotation(hint))


_HINT_NAMES = {**vars(collections.abc), **vars(typing), **vars(builtins)}


def _hint(annotation):
    """One parameter's annotation as a type (Optuna's are strings, some naming types
    imported only for type checkers: those are left to the constructor)."""
    if not isinstance(annotation, str):
        return None if annotation is inspect.Parameter.empty else annotation
    try:
        return eval(annotation, dict(_HINT_NAMES))  # an annotation string of the installed Optuna
    except Exception:
        return None


def sampler(cfg: Mapping, seed: int, space: list[Dimension], n_constraints: int = 0):
    """The sampler; with metric constraints, samplers that support them learn feasibility."""
    import optuna

    name, options = _kwargs(cfg, "sampler")
    if name not in SAMPLERS:
        raise ConfigError("sampler.name", f"{name!r} is not one of {sorted(SAMPLERS)}")
    cls = getattr(optuna.samplers, SAMPLERS[name])
    if n_constraints and "constraints_func" in inspect.signature(cls).parameters:
        options["constraints_func"] = lambda trial: trial.user_attrs.get("constraints", [0.0] * n_constraints)
    if name == "grid":
        options["search_space"] = {d.name: d.grid_values() for d in space}
    if name != "grid" or "seed" not in options:
        options.setdefault("seed", seed)
    check_options("sampler", cls, options)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError("sampler", f"{SAMPLERS[name]}: {exc}") from exc


def pruner(cfg: Mapping, multi_objective: bool):
    import optuna

    name, options = _kwargs(cfg, "pruner")
    if name not in PRUNERS:
        raise ConfigError("pruner.name", f"{name!r} is not one of {sorted(PRUNERS)}")
    if multi_objective and name != "none":
        log.warning("Optuna cannot prune multi-objective studies; pruner %s is ignored", name)
        name, options = "none", {}
    if name == "patient":
        inner_name, inner_options = _kwargs(options.pop("wrapped_pruner", {"name": "median"}), "pruner")
        inner = getattr(optuna.pruners, PRUNERS[inner_name])
        check_options("pruner.wrapped_pruner", inner, inner_options)
        options["wrapped_pruner"] = inner(**inner_options)
    check_options("pruner", getattr(optuna.pruners, PRUNERS[name]), options)
    try:
        return getattr(optuna.pruners, PRUNERS[name])(**options)
    except TypeError as exc:
        raise ConfigError("pruner", f"{PRUNERS[name]}: {exc}") from exc


def _journal(path: Path):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if path.is_dir():
        raise KwsError(f"storage: journal:{path} is a folder; name a file in it (storage=journal:{path}/optuna.log)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise KwsError(f"storage: cannot open journal:{path} ({exc.strerror or exc}); choose a writable file") from None


def storage(url: str, heartbeat_interval: int | None, on_stale: Callable | None = None):
    """An Optuna storage for ``url``: an RDB URL (sqlite, postgresql, mysql) with
    heartbeats, or ``journal:<file>`` for a shared file system."""
    import optuna

    if url.startswith("journal:"):
        return _journal(Path(url[len("journal:") :]).expanduser())
    url = databases.database_url(url)
    if url.startswith("sqlite:///"):
        databases.check_sqlite_file(Path(url[len("sqlite:///") :]).expanduser(), url, "storage")
    else:
        databases.check_server(url, "storage")
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    interval = int(heartbeat_interval) if heartbeat_interval else None
    try:
        with warnings.catch_warnings():  # heartbeats are marked experimental; we rely on them knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=interval,
                grace_period=3 * interval if interval else None,
                heartbeat_stale_trial_callback=on_stale if interval else None,
            )
    except Exception as exc:
        raise KwsError(f"storage: cannot open Optuna storage {url} ({str(exc).splitlines()[0]})") from exc
