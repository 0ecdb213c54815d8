"""Building models from config (``_target_`` + ``hydra.utils.instantiate``) and loading them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import keras

from kws_research.contract import CLIP_SAMPLES, INPUT_NAME
from kws_research.errors import ConfigError, KwsError, one_line


def model_name(model_cfg: Mapping) -> str:
    """Family name of a model config: the module of its builder (``...models.ds_cnn.build``)."""
    target = str(model_cfg.get("_target_", ""))
    parts = target.split(".")
    return parts[-2] if len(parts) >= 2 else target or "unknown"


def build_model(model_cfg: Mapping, num_classes: int) -> keras.Model:
    """Instantiate the builder named by ``model._target_`` with the YAML's keys (front-end
    models take ``spec_augment: ${augment.spec_augment}`` from their YAML).
    A builder's ValueError/TypeError becomes a :class:`ConfigError` on ``model``.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import get_method, instantiate

    target = model_cfg.get("_target_")
    if not target:
        raise ConfigError("model._target_", "missing", "every conf/model/*.yaml names its builder")
    try:
        get_method(str(target))  # a clear error for a typo in _target_, before instantiate
    except Exception as exc:
        raise ConfigError("model._target_", f"cannot import {target}") from exc
    try:
        model = instantiate(model_cfg, _convert_="all", num_classes=num_classes)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, KwsError):
            raise cause from None
        if isinstance(cause, (TypeError, ValueError)):
            raise ConfigError("model", f"{model_name(model_cfg)}: {cause}") from exc
        raise
    if not isinstance(model, keras.Model):
        raise KwsError(f"model._target_: {target} returned {type(model).__name__}, not a keras.Model")
    return model


def load_model(path: str | Path) -> keras.Model:
    """Load a saved ``.keras`` model in safe mode (no arbitrary code)."""
    try:
        return keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except ValueError as exc:
        if "safe_mode" in str(exc):
            raise KwsError(
                f"{path}: the model holds Python code (e.g. a Lambda layer's function) that Keras' safe mode "
                "will not load, so none of it ran; build it from registered layers (kws_research.models), "
                "or load it yourself with safe_mode=False only if you trust where it came from"
            ) from None
        raise KwsError(f"{path}: not a loadable .keras model ({one_line(exc, 300)})") from None


def waveform_input() -> keras.KerasTensor:
    """The model input of :mod:`kws_research.contract`: raw 1 s at 16 kHz, float32 int16 / 2**15."""
    return keras.Input(shape=(CLIP_SAMPLES,), name=INPUT_NAME, dtype="float32")
