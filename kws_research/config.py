"""Composing stage configs from Python (the sweep, benchmarks and tests use this)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, open_dict

from kws_research.cli import CONFIG_PATH, HYDRA_VERSION

CONF_DIR = (Path(__file__).parent / CONFIG_PATH).resolve()


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/<config_name>.yaml`` with Hydra command-line style ``overrides``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=HYDRA_VERSION):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return apply_choices(cfg, choices)


def apply_choices(cfg: DictConfig, choices: dict) -> DictConfig:
    """Fill ``model_label`` (the MLflow ``model`` tag) with the chosen model config's name."""
    if "model_label" in cfg and cfg.model_label is None and choices.get("model"):
        cfg.model_label = str(choices["model"])
    return cfg
