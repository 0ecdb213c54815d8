"""Composing stage configs from Python (the sweep, benchmarks and tests use this)."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf, open_dict

from kws_research import schema
from kws_research.errors import ConfigError
from kws_research.paths import CONF_DIR

HYDRA_VERSION = "1.3"


@functools.cache
def _shipped(group: str, option: str) -> dict:
    conf = OmegaConf.load(CONF_DIR / group / f"{option}.yaml")
    for key in list(conf):
        if OmegaConf.is_missing(conf, key):  # `???`: the caller must give it; absent here
            del conf[key]
    return OmegaConf.to_container(conf, resolve=True)


def shipped_group(group: str, option: str) -> dict:
    """The values of ``conf/<group>/<option>.yaml`` (a copy): the defaults the Python API
    fills in where a caller passes only some keys, so each default is written once."""
    return copy.deepcopy(_shipped(group, option))


def _compose(config_name: str, overrides: Sequence[str]) -> tuple[DictConfig, dict]:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=HYDRA_VERSION):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def _key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/<config_name>.yaml`` with Hydra command-line style ``overrides``, every value
    checked against its kind (:mod:`kws_research.schema`)."""
    cfg, choices = _compose(config_name, overrides)
    group_choices = [o for o in overrides if _key(o).replace(".", "/") in choices]
    defaults = cfg if len(group_choices) == len(overrides) else _compose(config_name, group_choices)[0]
    schema.check_config(
        config_name, OmegaConf.to_container(cfg, resolve=True), OmegaConf.to_container(defaults, resolve=True)
    )
    return apply_choices(cfg, choices)


def apply_choices(cfg: DictConfig, choices: dict) -> DictConfig:
    """Fill ``model_label`` (the MLflow ``model`` tag) with the chosen model config's name."""
    if "model_label" in cfg and cfg.model_label is None and choices.get("model"):
        cfg.model_label = str(choices["model"])
    return cfg


def check_overrides(config_name: str, overrides: Sequence[str]) -> None:
    """Compose once to turn Hydra's multi-line reports of a bad override (unknown key,
    unknown group option, bad syntax) into a :class:`ConfigError` naming the key and
    what is available."""
    from hydra.errors import MissingConfigException, OverrideParseException

    try:
        compose(config_name, overrides)
    except MissingConfigException as exc:
        group, _, option = str(exc.missing_cfg_file).rpartition("/")
        if exc.options:
            raise ConfigError(
                group or "config", f"no option {option!r}", f"available: {', '.join(exc.options)}"
            ) from None
        raise ConfigError(group or "config", str(exc).splitlines()[0]) from None
    except ConfigError:
        raise
    except OverrideParseException as exc:
        raise ConfigError(
            str(exc.override or "override"),
            f"cannot parse ({exc.message.splitlines()[0]})",
            "see https://hydra.cc/docs/advanced/override_grammar/basic",
        ) from None
    except Exception as exc:  # ConfigCompositionException and the OmegaConf errors beneath it
        match = re.search(r"Could not override '([^']+)'", str(exc))
        if not match:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError("overrides", first) from None
        key = match.group(1)
        rest = [o for o in overrides if _key(o) != key]
        hint = _known_keys(config_name, rest, key) + f"; to add a new key use +{key}=..."
        raise ConfigError(key, "no such key", hint) from None


def _known_keys(config_name: str, overrides: Sequence[str], key: str) -> str:
    parent = key.rpartition(".")[0]
    try:
        node = _compose(config_name, overrides)[0]
        node = OmegaConf.select(node, parent) if parent else node
    except Exception:
        return "check the spelling"
    if not isinstance(node, DictConfig):
        return "check the spelling"
    return f"keys of {parent or 'the config'}: {', '.join(str(k) for k in node)}"
