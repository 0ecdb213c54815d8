"""Checking a train config before anything runs, and knowing what its runs will report."""

from __future__ import annotations

from omegaconf import DictConfig

from kws_research.errors import ConfigError
from kws_research.models.gate import METRIC, RULES
from kws_research.streaming.settings import STREAM_METRICS, StreamSettings
from kws_research.training import optim, precision
from kws_research.training.augment import AugmentSettings

TRAINING_METRICS = (
    "best_val_accuracy",
    "best_epoch",
    "train_seconds",
    "epochs_run",
    "seconds_per_epoch",
    "params",
    "macs",
)
TEST_METRICS = ("test_accuracy", "test_loss", "command_accuracy")
OPEN_SET_METRICS = ("unseen_unknown_recall", "false_command_rate", "heldout_clips")
GATED_METRICS = ("gated_val_accuracy", "gated_test_accuracy", "gated_command_accuracy")


def produced_metrics(cfg: DictConfig) -> set[str]:
    """The metrics a completed run of ``cfg`` reports (test ones need a non-empty test
    split), so a sweep can refuse an objective or constraint no run will produce."""
    names = {*TRAINING_METRICS, *TEST_METRICS}
    heldout = bool(cfg.dataset.get("heldout_unknown_words"))
    if heldout:
        names.update(OPEN_SET_METRICS)
    openset = cfg.get("openset") or {}
    if openset.get("gate"):
        names.update({METRIC[str(openset.get("rule", "threshold"))], *GATED_METRICS})
        if heldout:
            names.update(f"gated_{key}" for key in OPEN_SET_METRICS if key != "heldout_clips")
    if cfg.get("stream_eval"):
        names.update(STREAM_METRICS)
    return names


def validate(cfg: DictConfig) -> None:
    """Check the values a typo or a bad override would break, naming the key."""
    trainer = cfg.trainer
    if not isinstance(trainer.epochs, int) or trainer.epochs < 1:
        raise ConfigError("trainer.epochs", f"{trainer.epochs!r} must be an integer >= 1")
    if not isinstance(trainer.batch_size, int) or trainer.batch_size < 1:
        raise ConfigError("trainer.batch_size", f"{trainer.batch_size!r} must be an integer >= 1")
    patience = trainer.get("early_stopping_patience")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ConfigError("trainer.early_stopping_patience", f"{patience!r} must be an integer >= 1 or null")
    precision.check(trainer.get("precision", "float32"))
    if not isinstance(cfg.seed, int):
        raise ConfigError("seed", f"{cfg.seed!r} must be an integer")
    optim.validate(cfg.optimizer)
    AugmentSettings.from_config(cfg.augment)
    if cfg.get("stream_eval"):
        StreamSettings.from_config(cfg.get("stream"))
    openset = cfg.get("openset") or {}
    if openset.get("rule", "threshold") not in RULES:
        raise ConfigError("openset.rule", f"{openset.get('rule')!r} is not one of {', '.join(RULES)}")
    drop = openset.get("max_command_drop", 0.01)
    if not isinstance(drop, (int, float)) or not 0 <= drop <= 1:
        raise ConfigError("openset.max_command_drop", f"{drop!r} must be a fraction in [0, 1] (0.01 = 1 point)")
