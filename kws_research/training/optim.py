"""Optimiser, schedule and loss from the ``optimizer`` config group.

``conf/optimizer/<name>.yaml`` holds a Keras optimiser (``_target_`` and its
keyword arguments) plus keys of the recipe that are not optimiser arguments:
``label_smoothing``, ``focal_gamma`` (above 0: the focal loss of Lin et al., 2017,
which weights each example by ``(1 - p)**gamma`` so that the few confidently wrong
windows, not the many easy ones, drive training) and the nested ``schedule``
group. A new optimiser is one YAML (any ``keras.optimizers`` class works).
"""

from __future__ import annotations

from collections.abc import Mapping

import keras

from kws_research.errors import ConfigError

RECIPE_KEYS = ("schedule", "label_smoothing", "focal_gamma")


def validate(cfg: Mapping) -> None:
    lr = cfg.get("learning_rate")
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ConfigError("optimizer.learning_rate", f"{lr!r} must be a number > 0")
    wd = cfg.get("weight_decay")
    if wd is not None and not wd >= 0:
        raise ConfigError("optimizer.weight_decay", f"{wd!r} must be >= 0")
    ls = cfg.get("label_smoothing") or 0.0
    if not 0 <= ls < 1:
        raise ConfigError("optimizer.label_smoothing", f"{ls!r} must be in [0, 1)")
    gamma = cfg.get("focal_gamma") or 0.0
    if not 0 <= gamma:
        raise ConfigError("optimizer.focal_gamma", f"{gamma!r} must be >= 0 (0: plain cross-entropy)")
    clip = cfg.get("clipnorm")
    if clip is not None and not clip > 0:
        raise ConfigError("optimizer.clipnorm", f"{clip!r} must be > 0 or null")


def build(
    cfg: Mapping, steps_per_epoch: int, epochs: int
) -> tuple[keras.optimizers.Optimizer, keras.losses.Loss, list[keras.callbacks.Callback]]:
    """The optimiser (with its schedule), the loss, and the schedule's callbacks."""
    from hydra.utils import instantiate

    validate(cfg)
    opt_cfg = {k: v for k, v in dict(cfg).items() if k not in RECIPE_KEYS}
    schedule_cfg = cfg.get("schedule") or {"_target_": "kws_research.training.schedules.constant"}
    learning_rate, callbacks = instantiate(
        schedule_cfg,
        learning_rate=float(cfg["learning_rate"]),
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        _convert_="all",
    )
    opt_cfg["learning_rate"] = learning_rate
    try:
        optimizer = instantiate(opt_cfg, _convert_="all")
    except Exception as exc:
        raise ConfigError("optimizer", f"cannot build {opt_cfg.get('_target_')}: {exc.__cause__ or exc}") from exc
    smoothing, gamma = float(cfg.get("label_smoothing") or 0.0), float(cfg.get("focal_gamma") or 0.0)
    loss = (
        keras.losses.CategoricalFocalCrossentropy(alpha=1.0, gamma=gamma, label_smoothing=smoothing)
        if gamma
        else keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    )
    return optimizer, loss, list(callbacks)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The rate the optimiser uses now (evaluates a schedule at the current step)."""
    lr = optimizer.learning_rate
    return float(keras.ops.convert_to_numpy(lr))
