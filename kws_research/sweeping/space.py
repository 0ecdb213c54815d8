"""The search space, written in the syntax of Hydra's Optuna sweeper plugin and read
with Hydra's own override parser:

    model: choice(ds_cnn, tc_resnet, cnn1d)          config group choice
    optimizer.learning_rate: tag(log, interval(1e-4, 1e-2))
    model.filters: int(interval(32, 128))
    trainer.batch_size: range(32, 129, 32)           stop exclusive, like Python's range
    augment.noise_volume: 0.1                        fixed value

Config-group dimensions are sampled first; a value dimension whose key does not
exist in the config those groups compose is not sampled for that trial (a
conditional space: ``model.width`` only when ``model=bc_resnet``). Keys with a
``+``/``++`` prefix are always applied.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from kws_research.errors import ConfigError
from kws_research.paths import CONF_DIR

PLAIN = re.compile(r"^[A-Za-z0-9_.:/\-]+$")


@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str  # categorical | int | float | fixed
    choices: tuple = ()
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False

    @property
    def name(self) -> str:
        """The Optuna parameter name (the override key without ``+`` prefixes)."""
        return self.key.lstrip("+~")

    @property
    def is_group(self) -> bool:
        return is_group_key(self.name)

    @property
    def always(self) -> bool:
        return self.key.startswith("+")

    def suggest(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)
        return self.choices[0]

    def override(self, value) -> str:
        return f"{self.key}={format_value(value)}"

    def grid_values(self) -> list:
        if self.kind == "categorical":
            return list(self.choices)
        if self.kind == "fixed":
            return [self.choices[0]]
        if self.step:
            count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            values = [self.low + i * self.step for i in range(count)]
            return [int(v) for v in values] if self.kind == "int" else values
        raise ConfigError(
            f"params.{self.name}", "a grid sampler needs choice(...) or range(...) here, not interval(...)"
        )


def is_group_key(key: str) -> bool:
    return (CONF_DIR / key.split("@", 1)[0]).is_dir()


def format_value(value) -> str:
    """A Python value back in Hydra override syntax."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    return text if PLAIN.match(text) else "'" + text.replace("'", "\\'") + "'"


def _choice(value):
    """Optuna categorical choices must be None/bool/int/float/str: write the rest as override text."""
    return value if value is None or isinstance(value, (bool, int, float, str)) else format_value(value)


def parse(params: Mapping[str, str]) -> list[Dimension]:
    """Dimensions of the space, group choices first (their order is the sampling order)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    dims = []
    for key, expr in params.items():
        try:
            value = parser.parse_overrides([f"{key}={expr}"])[0].value()
        except OverrideParseException as exc:
            raise ConfigError(f"params.{key}", f"cannot parse {expr!r}: {str(exc).splitlines()[0]}") from exc
        log = "log" in getattr(value, "tags", set())
        if isinstance(value, ChoiceSweep):
            dims.append(Dimension(key, "categorical", tuple(_choice(v) for v in value.list)))
        elif isinstance(value, IntervalSweep):
            is_int = isinstance(value.start, int) and isinstance(value.end, int)
            if not value.start < value.end:
                raise ConfigError(f"params.{key}", f"interval({value.start}, {value.end}) is empty")
            dims.append(Dimension(key, "int" if is_int else "float", low=value.start, high=value.end, log=log))
        elif isinstance(value, RangeSweep):
            values = list(_range(value.start, value.stop, value.step))
            if not values:
                raise ConfigError(f"params.{key}", f"range({value.start}, {value.stop}, {value.step}) is empty")
            is_int = all(isinstance(v, int) for v in (value.start, value.stop, value.step))
            dims.append(
                Dimension(key, "int" if is_int else "float", low=values[0], high=values[-1], step=value.step, log=log)
            )
        else:
            dims.append(Dimension(key, "fixed", (value,)))
    return sorted(dims, key=lambda d: not d.is_group)


def _range(start, stop, step):
    value, i = start, 0
    while (step > 0 and value < stop - 1e-12) or (step < 0 and value > stop + 1e-12):
        yield value
        i += 1
        value = start + i * step
