"""Every shipped config file is exercised: each model (presets included) trains a step on
TensorFlow's portable CPU kernels and converts; each optimiser, schedule, augmentation,
front end, trainer and data set option composes and runs; each sweep file samples a trial."""

from __future__ import annotations

import math

import keras
import numpy as np
import optuna
import pytest
from helpers.models import ZOO
from helpers.system import portable_report

from kws_research.config import compose
from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE
from kws_research.coreml.convert import convert, op_types
from kws_research.coreml.supported import MLPROGRAM_OPS
from kws_research.data.dataset import task_spec
from kws_research.models import build_model
from kws_research.paths import CONF_DIR, SWEEPS_DIR
from kws_research.sweeping.definition import load
from kws_research.sweeping.objective import check_metrics, sample
from kws_research.sweeping.space import parse
from kws_research.training import optim
from kws_research.training.augment import AugmentSettings, WaveformAugmenter
from kws_research.training.validation import validate


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


MODELS = options("model")
# Each family's own config (the zoo) converts and verifies in both formats in
# tests/test_coreml_runtime.py; the other model configs are presets of a family's sizes.
PRESETS = [m for m in MODELS if m not in ZOO]
LABELS = ["silence", "unknown", "yes", "no", "up"]
TESTED_GROUPS = {
    "model",
    "optimizer",
    "optimizer/schedule",
    "augment",
    "frontend",
    "trainer",
    "dataset",
    "experiment",
    "tracking",
    "hydra/job_logging",
    "stream",
}


def test_every_config_folder_is_covered_here():
    groups = {str(p.parent.relative_to(CONF_DIR)) for p in CONF_DIR.rglob("*.yaml") if p.parent != CONF_DIR}
    assert groups == TESTED_GROUPS, f"new config groups need a test here: {groups - TESTED_GROUPS}"


@pytest.mark.slow  # a subprocess with TF_ENABLE_ONEDNN_OPTS=0 trains every family
def test_every_model_config_trains_evaluates_and_reloads_on_portable_kernels(tmp_path):
    """TF_ENABLE_ONEDNN_OPTS=0 forces the kernels of CPUs without AVX-512 on any machine."""
    report = portable_report("models", "portable_training_report", str(tmp_path), *MODELS)
    assert sorted(report) == MODELS
    for name, row in report.items():
        assert math.isfinite(row["loss"]), name
        assert row["prob_sum_error"] < 1e-5 and row["reload_diff"] < 1e-5, (name, row)


@pytest.mark.slow  # the sizes of a family already converted in the fast lane
@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_model_config_converts_with_supported_ops(name):
    cfg = compose("train", [f"model={name}"])
    used = op_types(convert(build_model(cfg.model, len(LABELS)), LABELS, fmt="mlprogram"))
    assert set(used) <= MLPROGRAM_OPS, f"{name}: unsupported {set(used) - MLPROGRAM_OPS}"


def tiny_model() -> keras.Model:
    inputs = keras.Input((CLIP_SAMPLES,), name="audio")
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Reshape((CLIP_SAMPLES // 100, 100))(inputs))
    outputs = keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling1D()(hidden))
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "overrides",
    [
        *([f"optimizer={o}"] for o in options("optimizer")),
        *([f"optimizer/schedule={s}"] for s in options("optimizer/schedule")),
    ],
    ids=lambda o: o[0],
)
def test_every_optimizer_and_schedule_config_trains(overrides):
    cfg = compose("train", overrides)
    optimizer, loss, callbacks = optim.build(cfg.optimizer, steps_per_epoch=2, epochs=2)
    model = tiny_model()
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (8, CLIP_SAMPLES)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 5, 8), 5)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=4, epochs=2, validation_data=(x, y), callbacks=callbacks, verbose=0)
    assert all(math.isfinite(v) for v in history.history["loss"])
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))


@pytest.mark.parametrize("name", options("augment"))
def test_every_augment_config_augments_and_trains_with_its_spec_augment(name):
    cfg = compose("train", [f"augment={name}", "model=tc_resnet"])
    settings = AugmentSettings.from_config(cfg.augment)
    noise = np.random.default_rng(1).normal(0, 3000, 5 * SAMPLE_RATE).astype(np.int16)
    clean = np.tile(np.sin(np.arange(CLIP_SAMPLES) / 5).astype("float32") * 0.3, (4, 1))
    batch = WaveformAugmenter(settings, noise, [(0, noise.size)], 0)(clean.copy(), 0) if settings.active else clean
    assert batch.shape == clean.shape and np.isfinite(batch).all()
    assert settings.active == (not np.allclose(batch, clean))
    model = build_model(cfg.model, 5)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    assert math.isfinite(float(np.asarray(model.train_on_batch(batch, keras.utils.to_categorical(range(4), 5)))))


@pytest.mark.parametrize("name", options("frontend"))
def test_every_front_end_config_builds_trains_and_converts(name):
    cfg = compose("train", ["model=ds_cnn", f"frontend@model.frontend={name}"])
    assert cfg.model.frontend.kind == name
    model = build_model(cfg.model, len(LABELS))
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).normal(0, 0.1, (2, CLIP_SAMPLES)).astype("float32")
    assert math.isfinite(float(np.asarray(model.train_on_batch(x, keras.utils.to_categorical([0, 1], 5)))))
    assert set(op_types(convert(model, LABELS, fmt="mlprogram"))) <= MLPROGRAM_OPS


@pytest.mark.parametrize("trainer", options("trainer"))
@pytest.mark.parametrize("experiment", [None, *options("experiment")])
def test_every_trainer_and_experiment_config_validates(trainer, experiment):
    cfg = compose("train", [f"trainer={trainer}", *([f"+experiment={experiment}"] if experiment else [])])
    validate(cfg)
    assert cfg.trainer.epochs >= 1 and cfg.tracking.uri


@pytest.mark.parametrize("name", options("dataset"))
def test_every_dataset_config_is_a_valid_task(name):
    cfg = compose("train", [f"dataset={name}"]).dataset
    spec = task_spec(cfg)
    assert spec.classes[:2] == ("silence", "unknown") and len(spec.commands) == 10
    if cfg.get("generator"):
        from kws_research.data.synthetic import GeneratorSettings

        assert GeneratorSettings.from_config(cfg.generator, "dataset.generator").speakers >= 3
    if cfg.get("download") is not None and cfg.get("url"):
        assert cfg.url.startswith("https://") and len(cfg.archive_sha256) == 64 and cfg.archive_size > 0


@pytest.mark.parametrize("name", options("stream"))
@pytest.mark.parametrize("stage", ["train", "evaluate", "export", "mine"])
def test_every_stream_config_is_valid_in_every_stage_that_takes_it(name, stage):
    from kws_research.streaming.settings import StreamSettings

    settings = StreamSettings.from_config(compose(stage, [f"stream={name}"]).stream)
    assert settings.validation["negatives_minutes"] > 0 and settings.test["mixed_minutes"] > 0
    assert len(settings.thresholds) >= 50 and settings.target_fa_per_hour > 0
    if name == "long":  # the final evaluation the benchmark reports
        assert settings.test["negatives_minutes"] >= 60 and settings.test["mixed_minutes"] >= 30


@pytest.mark.parametrize("name", sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")))
def test_every_sweep_file_loads_and_samples_a_trial(name):
    definition = load([f"sweep={name}"])
    space = parse(definition.params)
    base = compose("train", definition.base_overrides)
    check_metrics(definition, base)
    study = optuna.create_study(directions=list(definition.directions), sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        overrides = sample(trial, space, definition.base_overrides)
        cfg = compose("train", [*definition.base_overrides, *overrides])
        validate(cfg)
        assert cfg.model._target_ and trial.params
        study.tell(trial, [0.0] * len(definition.directions))
