"""A sweep definition: a YAML file in ``sweeps/`` plus command-line overrides.

Every top-level field of the file can be overridden (``n_trials=3``,
``sampler.name=random``, ``params.optimizer.learning_rate='tag(log, interval(1e-4, 1e-2))'``);
any other ``key=value`` is a run override passed through to every trial
(``trainer.epochs=2``, ``dataset=speech_commands``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kws_research.errors import ConfigError, KwsError
from kws_research.paths import SWEEPS_DIR
from kws_research.schema import INT, LIST, NUMBER, Spec, check_value

# The sweep file's fields: their kinds and ranges (one typed check, kws_research.schema)
# and their defaults.
FIELD_SPECS = {
    "study_name": Spec("str"),
    "storage": Spec("str"),
    "metrics": LIST(Spec("str")),
    "directions": LIST(Spec("str", choices=("maximize", "minimize"))),
    "n_trials": INT(1),
    "timeout": NUMBER(0.001, null=True),
    "workers": INT(1),
    "seed": INT(),
    "sampler": Spec("mapping"),
    "pruner": Spec("mapping"),
    "constraints": Spec("mapping"),
    "overrides": LIST(Spec("str")),
    "params": Spec("mapping"),
    "heartbeat_interval": INT(1, null=True),
    "export": Spec("mapping"),
}
FIELDS = tuple(FIELD_SPECS)
CONSTRAINT_SPEC = NUMBER(null=True)  # constraints.max_params, .max_macs, .min_<metric>, .max_<metric>
DEFAULTS = {
    "storage": "sqlite:///optuna.db",
    "metrics": ["best_val_accuracy"],
    "directions": ["maximize"],
    "n_trials": 10,
    "timeout": None,
    "workers": 1,
    "seed": 0,
    "sampler": {"name": "tpe"},
    "pruner": {"name": "median"},
    "constraints": {"max_params": None, "max_macs": None},
    "overrides": [],
    "params": {},
    "heartbeat_interval": 10,
    "export": {"enabled": False},
}


@dataclass
class SweepDefinition:
    """The resolved sweep: the file's fields with overrides applied (``config``, kept
    whole for the parent run's ``sweep.yaml`` and the worker processes), each field
    as an attribute, and the extra run overrides."""

    name: str
    config: DictConfig
    run_overrides: list[str] = field(default_factory=list)
    study_name: str = field(init=False)
    storage: str = field(init=False)
    metrics: list[str] = field(init=False)
    directions: list[str] = field(init=False)
    n_trials: int = field(init=False)
    timeout: float | None = field(init=False)
    workers: int = field(init=False)
    seed: int = field(init=False)
    sampler: DictConfig = field(init=False)
    pruner: DictConfig = field(init=False)
    constraints: DictConfig = field(init=False)
    overrides: list[str] = field(init=False)
    params: DictConfig = field(init=False)
    heartbeat_interval: int | None = field(init=False)
    export: DictConfig = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        self.study_name, self.storage = str(c.study_name), str(c.storage)
        self.metrics, self.directions = [str(m) for m in c.metrics], [str(d) for d in c.directions]
        self.n_trials, self.timeout, self.workers, self.seed = c.n_trials, c.timeout, c.workers, c.seed
        self.sampler, self.pruner, self.constraints = c.sampler, c.pruner, c.constraints
        self.overrides = [str(o) for o in c.overrides]
        self.params, self.heartbeat_interval, self.export = c.params, c.heartbeat_interval, c.export

    @property
    def base_overrides(self) -> list[str]:
        """What every trial composes: the file's overrides, then the command line's."""
        return [*self.overrides, *self.run_overrides]

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(
            OmegaConf.create(
                {
                    "sweep": self.name,
                    **OmegaConf.to_container(self.config, resolve=True),
                    "run_overrides": self.run_overrides,
                }
            )
        )


def sweep_file(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = SWEEPS_DIR / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    known = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
    raise KwsError(f"sweep: no sweep named {name!r}; choose one of {known} or pass a path to a YAML file")


def _parse(override: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return OverridesParser.create().parse_overrides([override])[0]
    except OverrideParseException as exc:
        raise KwsError(f"cannot parse override {override!r}: {str(exc).splitlines()[0]}") from exc


SWITCHES = ("sampler.name", "pruner.name")


def load(argv: list[str]) -> SweepDefinition:
    """Build the definition from ``sweep=<name>`` and the other command-line overrides."""
    name = "quick"
    rest = []
    for arg in argv:
        if arg.startswith("sweep="):
            name = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    path = sweep_file(name)
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    except Exception as exc:
        raise KwsError(f"{path}: not valid YAML ({exc})") from exc
    unknown = set(loaded) - set(FIELDS)
    if unknown:
        raise KwsError(f"{path}: unknown field(s) {sorted(unknown)}; the fields are {list(FIELDS)}")
    config = OmegaConf.create({**DEFAULTS, "study_name": Path(path).stem, **loaded})
    run_overrides = []
    for arg in sorted(rest, key=lambda a: a.partition("=")[0].lstrip("+~") not in SWITCHES):
        key, sep, raw = arg.partition("=")
        top = key.lstrip("+~").split(".", 1)[0]
        if top in FIELDS and key.startswith("~"):
            raise ConfigError(key.lstrip("~"), "a sweep field cannot be deleted", f"set it: {key[1:]}=<value>")
        if not sep:
            raise KwsError(f"override {arg!r} is not key=value")
        if top in FIELDS:  # a sweep field: `+field=` and `++field=` set it like `field=`
            key = key.lstrip("+")
        if top == "params" and "." in key:
            config.params[key.split(".", 1)[1]] = raw
        elif key in SWITCHES and raw != str(config[top].get("name")):
            # Another sampler/pruner: the file's options belong to the one it named
            # (as choosing another option of a Hydra group replaces the group).
            config[top] = {"name": _parse(arg).value()}
        elif top in FIELDS:
            value = _parse(arg).value()
            OmegaConf.update(config, key, json.loads(json.dumps(value, default=str)), force_add=True)
        else:
            _parse(arg)  # fail early on syntax errors, in Hydra's words
            run_overrides.append(arg)
    for name in ("metrics", "directions"):  # metrics=best_val_accuracy: a list of one
        if isinstance(config[name], str):
            config[name] = [config[name]]
    validate(config)
    return SweepDefinition(str(path.stem), config, run_overrides)


def validate(c: DictConfig) -> None:
    """The fields' kinds and ranges, then how they fit together; before any store is opened."""
    for name, spec in FIELD_SPECS.items():
        check_value(name, OmegaConf.to_container(c)[name] if name in c else None, spec)
    for name, bound in dict(c.constraints).items():
        check_value(f"constraints.{name}", bound, CONSTRAINT_SPEC)
    if len(c.metrics) != len(c.directions):
        raise ConfigError("directions", f"{len(c.directions)} direction(s) for {len(c.metrics)} metric(s)")
    if not str(c.study_name).strip():
        raise ConfigError("study_name", "must not be empty")
