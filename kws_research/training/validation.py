"""Checking a train config before anything runs, and knowing what its runs will report."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kws_research.errors import ConfigError
from kws_research.metrics import (
    GATED_METRICS,
    OPEN_SET_METRICS,
    STREAMING_MODEL_METRICS,
    TEST_METRICS,
    TRAINING_METRICS,
    VALIDATION_METRICS,
)
from kws_research.models.gate import COST_METRICS, METRIC, RULES
from kws_research.schema import check_declared
from kws_research.streaming.settings import STREAM_METRICS, VALIDATION_STREAM_METRICS, StreamSettings
from kws_research.training import optim, precision
from kws_research.training.augment import AugmentSettings
from kws_research.training.stream_windows import StreamWindowSettings


def produced_metrics(cfg: DictConfig) -> set[str]:
    """The metrics a completed run of ``cfg`` reports (test ones need a non-empty test
    split), so a sweep can refuse an objective or constraint no run will produce."""
    names = {*TRAINING_METRICS, *VALIDATION_METRICS, *TEST_METRICS}
    if cfg.model.get("frontend") is not None:
        names.update(STREAMING_MODEL_METRICS)
    heldout = bool(cfg.dataset.get("heldout_unknown_words"))
    if heldout:
        names.update(OPEN_SET_METRICS)
    openset = cfg.openset
    if openset.gate:
        names.update({METRIC[str(openset.rule)], *COST_METRICS, *GATED_METRICS})
        if heldout:
            names.update(f"gated_{key}" for key in OPEN_SET_METRICS if key != "heldout_clips")
    if cfg.stream_eval:
        names.update(STREAM_METRICS if cfg.stream_eval is True else VALIDATION_STREAM_METRICS)
    return names


def validate(cfg: DictConfig) -> None:
    """Check the values a typo or a bad override would break, naming the key: every
    declared kind and range (the same check a composed config passed), then what only
    the code knows (optimizer options, augmentation, stream settings, the rule names)."""
    check_declared("train", OmegaConf.to_container(cfg, resolve=True))
    precision.check(cfg.trainer.precision)
    optim.validate(cfg.optimizer)
    AugmentSettings.from_config(cfg.augment)
    StreamWindowSettings.from_config(cfg.get("stream_windows")).check_budget(int(cfg.trainer.epochs))
    if cfg.stream_eval:
        StreamSettings.from_config(cfg.stream)
    if cfg.openset.rule not in RULES:
        raise ConfigError("openset.rule", f"{cfg.openset.rule!r} is not one of {', '.join(RULES)}")
