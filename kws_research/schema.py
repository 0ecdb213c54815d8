"""One typed check of every configuration value, before any stage starts work.

A value must be of the kind of its shipped default (a number, a string, a flag, a
list of those, a mapping with the same keys); keys whose default is null or does not
tell the kind, and the ranges that matter, are declared once in :data:`DECLARED`.
A key no shipped config has is refused, whatever its prefix: no code would read it.
The same :class:`Spec` checks the sweep file's fields and the options of Optuna's
samplers and pruners (from their constructors' type hints).
"""

from __future__ import annotations

import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kws_research.errors import ConfigError
from kws_research.paths import system_folder


@dataclass(frozen=True)
class Spec:
    """What one value may be: its kind, whether null is allowed, a closed range for
    numbers (and list items), the kind of list items, and allowed strings."""

    kind: str = "any"
    nullable: bool = False
    low: float | None = None
    high: float | None = None
    item: Spec | None = None
    choices: tuple[str, ...] = ()
    options: tuple[Spec, ...] = ()  # kind "union": any one of these
    pattern: str | None = None  # strings: a regular expression the whole value matches
    pattern_text: str = ""  # what the pattern allows, in words

    def describe(self) -> str:
        if self.kind == "union":
            return " or ".join(option.describe() for option in self.options)
        if self.kind == "list":
            text = f"a list of {self.item.describe() if self.item else 'values'}"
        elif self.choices:
            text = "one of " + ", ".join(self.choices)
        elif self.pattern:
            text = self.pattern_text
        else:
            text = {
                "int": "an integer",
                "number": "a number",
                "bool": "true or false",
                "str": "a string",
                "folder": "a folder path",
            }.get(self.kind, f"a {self.kind}")
        if self.low is not None and self.high is not None:
            text += f" in [{self.low:g}, {self.high:g}]"
        elif self.low is not None:
            text += f" >= {self.low:g}"
        elif self.high is not None:
            text += f" <= {self.high:g}"
        return text + (" or null" if self.nullable else "")


def INT(low: float | None = None, high: float | None = None, null: bool = False) -> Spec:
    return Spec("int", null, low, high)


def NUMBER(low: float | None = None, high: float | None = None, null: bool = False) -> Spec:
    return Spec("number", null, low, high)


def LIST(item: Spec, null: bool = False) -> Spec:
    return Spec("list", null, item=item)


def ANY_OF(*options: Spec) -> Spec:
    return Spec("union", any(o.nullable for o in options), options=options)


STR_OR_NULL = Spec("str", nullable=True)
# MLflow's registered model names as a path-safe name: no folder parts, no spaces
MODEL_NAME = Spec(
    "str",
    nullable=True,
    pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}",
    pattern_text="a name of letters, digits, '_', '.' and '-' (no '/')",
)
BACKGROUND = Spec("str", nullable=True, choices=("speech", "long_folder", "conversation"))
FOLDER = Spec("folder")  # a folder of the user's: never the file-system root or a system folder
FOLDER_OR_NULL = Spec("folder", nullable=True)
FRACTION = NUMBER(0, 1)
PERCENT = NUMBER(0, 100)
MINUTES = NUMBER(0)

# Keys (relative to the composed stage config) whose default does not tell their kind,
# or whose range matters; "*" holds the config groups' keys shared by every stage. A
# declared key applies where a shipped config has it (a model's keys are its own YAML's).
DECLARED: dict[str, dict[str, Spec]] = {
    "*": {
        "seed": INT(),
        "trainer.epochs": INT(1),
        "trainer.batch_size": INT(1),
        "trainer.early_stopping_patience": INT(1, null=True),
        "trainer.verbose": ANY_OF(Spec("str", choices=("auto",)), INT(0, 2)),
        "optimizer.learning_rate": NUMBER(0),
        "optimizer.weight_decay": NUMBER(0, null=True),
        "optimizer.clipnorm": NUMBER(0, null=True),
        "optimizer.label_smoothing": NUMBER(0, 1),
        "optimizer.focal_gamma": NUMBER(0, 10),
        "openset.max_command_drop": FRACTION,
        "openset.confidence": NUMBER(0, 1, null=True),
        "augment.time_shift_ms": NUMBER(0, 1000),
        "augment.noise_probability": FRACTION,
        "augment.noise_volume": NUMBER(0, 1),
        "augment.speed_range": LIST(NUMBER(0.5, 2.0), null=True),
        "model.dropout": NUMBER(0, 1),
        "dataset.root": FOLDER_OR_NULL,
        "dataset.cache_dir": FOLDER,
        "dataset.url": STR_OR_NULL,
        "dataset.archive_sha256": STR_OR_NULL,
        "dataset.archive_size": INT(1, null=True),
        "dataset.unknown_percentage": NUMBER(0),
        "dataset.silence_percentage": NUMBER(0),
        "dataset.validation_percentage": PERCENT,
        "dataset.testing_percentage": PERCENT,
        "dataset.heldout_unknown_words": LIST(Spec("str")),
        "dataset.unknown_folder": FOLDER_OR_NULL,
        "dataset.long_folder": FOLDER_OR_NULL,
        "dataset.long_speaker": STR_OR_NULL,
        "dataset.hard_negatives": Spec("any", nullable=True),
        "dataset.synthetic_unknown.vocabulary": STR_OR_NULL,
        "dataset.synthetic_speech.vocabulary": STR_OR_NULL,
        "stream.validation.mixed_minutes": MINUTES,
        "stream.validation.negatives_minutes": MINUTES,
        "stream.test.mixed_minutes": MINUTES,
        "stream.test.negatives_minutes": MINUTES,
        "stream.snr_db": LIST(NUMBER(-20, 60)),
        "stream.background_snr_db": NUMBER(-20, 60),
        "stream.unknown_fraction": FRACTION,
        "stream.unknown_percentage": NUMBER(0, null=True),
        "stream.thresholds": LIST(NUMBER(0, 1), null=True),
        "stream.target_fa_per_hour": NUMBER(0.01),  # 0.01 FA/h already needs 300 h of negatives
        "stream.hop_ms": INT(10, 1000),  # StreamSettings' own range: refused when composed, not 20 s later
        "stream.min_count": INT(1),
        "stream.verify_seconds": NUMBER(0),
        "stream.batch_size": INT(1),
        "stream.background": ANY_OF(BACKGROUND, LIST(BACKGROUND)),
        "stream.unknown_sources": Spec("mapping", nullable=True),
        "stream.reverb": FRACTION,
        "augment.reverb": FRACTION,
        "stream.rooms.rt60": LIST(NUMBER(0.05, 2.0)),
        "augment.rooms.rt60": LIST(NUMBER(0.05, 2.0)),
        "stream.rooms.distance": LIST(NUMBER(0.1, 6.0)),
        "augment.rooms.distance": LIST(NUMBER(0.1, 6.0)),
        "stream.rooms.count": INT(1),
        "augment.rooms.count": INT(1),
        "dataset.generator.engines": LIST(Spec("str", choices=("espeak", "piper"))),
        "dataset.generator.speakers": INT(3),  # one speaker at least per split
        "dataset.generator.repetitions": INT(1),
        "dataset.generator.validation_fraction": NUMBER(0, 0.45),  # the training split keeps 10% at least
        "dataset.generator.testing_fraction": NUMBER(0, 0.45),
        "dataset.synthetic_unknown.engines": LIST(Spec("str", choices=("espeak", "piper"))),
        "dataset.synthetic_speech.engines": LIST(Spec("str", choices=("espeak", "piper"))),
        "stream_windows.share": NUMBER(0, 0.95),
        "stream_windows.minutes": NUMBER(0.1),
        "stream_windows.gap_seconds": LIST(NUMBER(0, 10)),
        "stream_windows.unknown_fraction": FRACTION,
        "stream_windows.command_inside": FRACTION,
        "stream_windows.partial_below": FRACTION,
        "stream_windows.context": FRACTION,
        "stream_windows.mining_rounds": INT(0),
        "stream_windows.mining_epochs": INT(1),
        "stream_windows.mining_minutes": NUMBER(0.1),
        "stream_windows.mining_threshold": NUMBER(0, 1),
        "stream_windows.mined_share": FRACTION,
        "tracking.experiment": STR_OR_NULL,
        "tracking.run_name": STR_OR_NULL,
        "model_label": STR_OR_NULL,
        "stream_eval": ANY_OF(Spec("bool"), Spec("str", choices=("validation",))),
        "sweep": STR_OR_NULL,
        "run_id": Spec("str"),
    },
    "prepare": {"workers": INT(1, null=True)},
    "export": {
        "quantize": Spec("str", nullable=True, choices=("int8",)),
        "evaluation": Spec("str", choices=("run", "here")),
        "output_dir": FOLDER_OR_NULL,
        "verify_clips": INT(1, null=True),
        "registry.name": MODEL_NAME,
        "metadata.license": STR_OR_NULL,
        "tolerance.fp32": FRACTION,
        "tolerance.fp16": FRACTION,
        "tolerance.int8": FRACTION,
        "baseline_overrides": LIST(Spec("str")),
    },
    "mine": {
        "minutes": NUMBER(0.01),
        "folder": FOLDER_OR_NULL,
        "threshold": NUMBER(0, 1, null=True),
        "output": FOLDER_OR_NULL,
    },
}


def _fail(key: str, value: Any, spec: Spec) -> None:
    raise ConfigError(key, f"{value!r} is not {spec.describe()}")


def check_value(key: str, value: Any, spec: Spec) -> None:
    """Refuse ``value`` for ``key`` unless it fits ``spec`` (booleans are no numbers)."""
    if value is None:
        if not spec.nullable and spec.kind != "any":
            _fail(key, value, spec)
        return
    kind = spec.kind
    if kind == "any":
        return
    if kind == "union":
        for option in spec.options:
            try:
                return check_value(key, value, option)
            except ConfigError:
                continue
        _fail(key, value, spec)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "number": numeric and math.isfinite(value),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "folder": isinstance(value, str),
        "list": isinstance(value, Sequence) and not isinstance(value, str),
        "mapping": isinstance(value, Mapping),
    }[kind]
    if not ok or (spec.choices and value not in spec.choices):
        _fail(key, value, spec)
    if spec.pattern and not re.fullmatch(spec.pattern, value):
        _fail(key, value, spec)
    if kind == "folder" and (reason := system_folder(value)):
        raise ConfigError(key, f"{value!r} is {reason}", "the harness reads and writes only folders of yours")
    if numeric and ((spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high)):
        _fail(key, value, spec)
    if kind == "list" and spec.item is not None:
        for index, item in enumerate(value):
            check_value(f"{key}[{index}]", item, spec.item)


def spec_of_default(default: Any) -> Spec:
    """The kind a shipped default tells: numbers (int or float) stay numbers."""
    if default is None:
        return Spec("any", nullable=True)
    if isinstance(default, bool):
        return Spec("bool")
    if isinstance(default, (int, float)):
        return Spec("number")
    if isinstance(default, str):
        return Spec("str")
    if isinstance(default, Mapping):
        return Spec("mapping")
    if isinstance(default, Sequence):
        items = [spec_of_default(v) for v in default]
        kinds = {s.kind for s in items}
        return LIST(items[0]) if len(kinds) == 1 and items else LIST(Spec("any", nullable=True))
    return Spec()


def spec_of_annotation(annotation: Any) -> Spec:
    """A :class:`Spec` from a type hint (``int``, ``float | None``, ``Sequence[str]``, ...)."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        nullable = len(rest) < len(args)
        inner = spec_of_annotation(rest[0]) if len(rest) == 1 else Spec("any")
        return Spec(inner.kind, nullable or inner.nullable, item=inner.item)
    if annotation is bool:
        return Spec("bool")
    if annotation is int:
        return Spec("int")
    if annotation is float:
        return Spec("number")
    if annotation is str:
        return Spec("str")
    if origin in (list, tuple) or (isinstance(origin, type) and issubclass(origin, Sequence)):
        return LIST(spec_of_annotation(args[0]) if args else Spec())
    if origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        return Spec("mapping")
    return Spec()


def _walk(node: Any, prefix: str = ""):
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
    else:
        yield prefix, node


def _lookup(tree: Any, key: str) -> tuple[bool, Any]:
    """(found, value) of a dotted key; a null or non-mapping ancestor counts as found
    (anything may sit under a null default)."""
    node = tree
    for part in key.split("."):
        if not isinstance(node, Mapping):
            return True, None
        if part not in node:
            return False, None
        node = node[part]
    return True, node


def _keys_of(tree: Any, key: str) -> str:
    parent = key.rpartition(".")[0]
    found, node = _lookup(tree, parent) if parent else (True, tree)
    if found and isinstance(node, Mapping):
        return f"keys of {parent or 'the config'}: {', '.join(str(k) for k in node)}"
    return "check the spelling"


def check_config(config_name: str, cfg: Mapping, defaults: Mapping) -> None:
    """Every leaf of ``cfg`` (a plain, resolved container) against its declared spec or
    the kind of its value in ``defaults`` (the same config with only the group choices)."""
    declared = {**DECLARED["*"], **DECLARED.get(config_name, {})}
    for key, value in _walk(cfg):
        if isinstance(value, str) and value == "???":
            continue
        found, default = _lookup(defaults, key)
        if not found:
            raise ConfigError(
                key, "no such key in any shipped config, so no stage would read it", _keys_of(defaults, key)
            )
        spec = declared.get(key) or spec_of_default(default)
        check_value(key, value, spec)


def check_declared(config_name: str, cfg: Mapping) -> None:
    """The declared specs alone, for a config built or changed in Python after composing."""
    for key, spec in {**DECLARED["*"], **DECLARED.get(config_name, {})}.items():
        node = cfg
        for part in key.split("."):
            node = node.get(part, _ABSENT) if isinstance(node, Mapping) else _ABSENT
        if node is not _ABSENT:
            check_value(key, node, spec)


_ABSENT = object()
