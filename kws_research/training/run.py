"""One training run, start to finish, recorded in MLflow (the ``train`` stage's Python API).

Order matters for bad input: the config is validated and the data prepared
before an MLflow run exists, so a wrong key or a missing data root leaves no
run at all; anything failing after that ends the run FAILED with the reason.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf

from kws_research.errors import ConfigError

log = logging.getLogger(__name__)

FINAL_METRICS = ("best_val_accuracy", "test_accuracy", "test_loss", "params", "macs", "train_seconds",
                 "epochs_run")
TRAINING_METRICS = ("best_val_accuracy", "best_epoch", "train_seconds", "epochs_run", "seconds_per_epoch",
                    "params", "macs")
TEST_METRICS = ("test_accuracy", "test_loss", "command_accuracy")
OPEN_SET_METRICS = ("unseen_unknown_recall", "false_command_rate", "heldout_clips")
GATED_METRICS = ("gated_val_accuracy", "gated_test_accuracy", "gated_command_accuracy")


def produced_metrics(cfg: DictConfig) -> set[str]:
    """The metrics a completed run of ``cfg`` reports (test ones need a non-empty test
    split), so a sweep can refuse an objective or constraint no run will produce."""
    from kws_research.models.gate import METRIC

    names = {*TRAINING_METRICS, *TEST_METRICS}
    heldout = bool(cfg.dataset.get("heldout_unknown_words"))
    if heldout:
        names.update(OPEN_SET_METRICS)
    openset = cfg.get("openset") or {}
    if openset.get("gate"):
        names.update({METRIC[str(openset.get("rule", "threshold"))], *GATED_METRICS})
        if heldout:
            names.update(f"gated_{key}" for key in OPEN_SET_METRICS if key != "heldout_clips")
    return names


@dataclass
class TrainResult:
    """What a run returns to its caller (the CLI prints it, the sweep optimises it)."""

    run_id: str
    metrics: dict[str, float]
    stopped: str | None = None  # set when training was cut short on purpose (pruned, over budget)
    intermediate: list[float] = field(default_factory=list)


@dataclass
class RunHooks:
    """How a caller (the sweep) takes part in a run without the run knowing about it.

    ``on_start(run_id)`` learns the MLflow run id as soon as the run exists;
    ``check_model(model, sizes)`` returns a reason to skip training (e.g. over a size
    budget); ``callbacks`` join Keras ``fit``; a callback whose ``stop_reason`` is set
    after ``fit`` marks the run as stopped on purpose (e.g. pruned).
    """

    on_start: Callable[[str], None] | None = None
    check_model: Callable[[object, dict], str | None] | None = None
    callbacks: list = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None


def validate(cfg: DictConfig) -> None:
    """Check the values a typo or a bad override would break, naming the key."""
    from kws_research.models.gate import RULES
    from kws_research.training import optim
    from kws_research.training.augment import AugmentSettings

    trainer = cfg.trainer
    if not isinstance(trainer.epochs, int) or trainer.epochs < 1:
        raise ConfigError("trainer.epochs", f"{trainer.epochs!r} must be an integer >= 1")
    if not isinstance(trainer.batch_size, int) or trainer.batch_size < 1:
        raise ConfigError("trainer.batch_size", f"{trainer.batch_size!r} must be an integer >= 1")
    patience = trainer.get("early_stopping_patience")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ConfigError("trainer.early_stopping_patience", f"{patience!r} must be an integer >= 1 or null")
    if not isinstance(cfg.seed, int):
        raise ConfigError("seed", f"{cfg.seed!r} must be an integer")
    optim.validate(cfg.optimizer)
    AugmentSettings.from_config(cfg.augment)
    openset = cfg.get("openset") or {}
    if openset.get("rule", "threshold") not in RULES:
        raise ConfigError("openset.rule", f"{openset.get('rule')!r} is not one of {', '.join(RULES)}")
    drop = openset.get("max_command_drop", 0.01)
    if not isinstance(drop, (int, float)) or not 0 <= drop <= 1:
        raise ConfigError("openset.max_command_drop", f"{drop!r} must be a fraction in [0, 1] (0.01 = 1 point)")


def _verbosity(setting) -> int:
    if setting in (None, "auto"):
        return 1 if sys.stdout.isatty() else 2
    return int(setting)


def run_training(cfg: DictConfig, hooks: RunHooks | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.dataset`` and record everything in MLflow."""
    from kws_research.data.dataset import prepare
    from kws_research.tracking import store
    from kws_research.tracking.runs import flatten, git_commit, log_params, tracked_run
    from kws_research.training.memory import released_custom_gradients

    hooks = hooks or RunHooks()
    validate(cfg)
    data = prepare(OmegaConf.to_container(cfg.dataset, resolve=True))
    if not len(data.splits["train"]) or not len(data.splits["validation"]):
        raise ConfigError("dataset", f"{data.name}: the train or validation split is empty; "
                          "check the split lists or percentages")
    client = store.client_for(cfg.tracking)
    experiment = store.experiment_id(client, cfg.tracking, cfg.tracking.get("experiment") or data.name)
    from kws_research.models.registry import model_name

    model_label = str(cfg.get("model_label") or model_name(cfg.model))
    tags = {
        "role": str(cfg.get("role", "train")),
        "model": model_label,
        "dataset": data.name,
        "dataset_fingerprint": data.fingerprint,
        "test_fingerprint": data.test_fingerprint,
        "git_commit": git_commit(),
        "seed": str(cfg.seed),
        **hooks.tags,
    }
    run_name = cfg.tracking.get("run_name") or f"{tags['role']}-{model_label}"
    resolved = OmegaConf.to_container(cfg, resolve=True)
    with tracked_run(client, experiment, run_name, tags, hooks.parent_run_id) as run_id:
        if hooks.on_start is not None:
            hooks.on_start(run_id)
        log.info("MLflow run %s (%s) in experiment %s", run_id, run_name, experiment)
        log_params(client, run_id, flatten(resolved))
        with released_custom_gradients():
            return _train_in_run(cfg, resolved, data, client, run_id, hooks)


def fresh_session(seed: int, deterministic: bool = True) -> None:
    """Clear Keras' global state, then seed: clearing after seeding would drop the seed
    Keras stores for its global seed generator."""
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _train_in_run(cfg, resolved: dict, data, client, run_id: str, hooks: RunHooks) -> TrainResult:
    import keras

    from kws_research.models import build_model, complexity
    from kws_research.tracking.runs import log_metrics
    from kws_research.training import optim, pipeline
    from kws_research.training.augment import AugmentSettings, WaveformAugmenter
    from kws_research.training.callbacks import EpochLogger, InterruptCheck, NonFiniteLoss

    fresh_session(int(cfg.seed), bool(cfg.trainer.get("deterministic", True)))
    num_classes = len(data.classes)
    model = build_model(cfg.model, num_classes, spec_augment=cfg.augment.get("spec_augment"))
    sizes = complexity(model)
    log_metrics(client, run_id, {k: float(v) for k, v in sizes.items()})
    if hooks.check_model is not None:
        reason = hooks.check_model(model, sizes)
        if reason:
            client.set_tag(run_id, "stopped", reason)
            return TrainResult(run_id, dict(sizes), stopped=reason)

    epochs, batch = int(cfg.trainer.epochs), int(cfg.trainer.batch_size)
    train_split = data.splits["train"]
    steps = pipeline.steps_per_epoch(train_split, batch)
    optimizer, loss, schedule_callbacks = optim.build(cfg.optimizer, steps, epochs)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    settings = AugmentSettings.from_config(cfg.augment)
    augmenter = (WaveformAugmenter(settings, data.noise, data.noise_segments("train"), int(cfg.seed))
                 if settings.active else None)
    train_ds = pipeline.training_dataset(train_split, num_classes, batch, int(cfg.seed), augmenter)
    val_ds = pipeline.evaluation_dataset(data.splits["validation"], num_classes, batch)

    patience = cfg.trainer.get("early_stopping_patience") or epochs
    stopper = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=patience,
                                            restore_best_weights=True, verbose=0)
    epoch_logger = EpochLogger(client, run_id)
    callbacks = [epoch_logger, InterruptCheck(), NonFiniteLoss(), stopper, *schedule_callbacks, *hooks.callbacks]
    started = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=steps,
              callbacks=callbacks, shuffle=False, verbose=_verbosity(cfg.trainer.get("verbose")))
    train_seconds = time.perf_counter() - started
    history = epoch_logger.history
    val_history = history.get("val_accuracy", [])
    metrics = {
        "best_val_accuracy": max(val_history) if val_history else float("nan"),
        "best_epoch": int(val_history.index(max(val_history))) + 1 if val_history else 0,
        "train_seconds": train_seconds,
        "epochs_run": len(val_history),
        "seconds_per_epoch": train_seconds / max(1, len(val_history)),
        "params": sizes["params"],
        "macs": sizes["macs"],
    }
    stop_reasons = [getattr(cb, "stop_reason", None) for cb in hooks.callbacks]
    stopped = next((r for r in stop_reasons if r), None)
    if stopped:
        client.set_tag(run_id, "stopped", stopped)
        log_metrics(client, run_id, metrics)
        return TrainResult(run_id, metrics, stopped=stopped, intermediate=val_history)
    metrics.update(_evaluate_and_log(cfg, resolved, data, model, client, run_id, history, metrics))
    log_metrics(client, run_id, metrics)
    return TrainResult(run_id, metrics, intermediate=val_history)


def _gate_metrics(data, probs: dict, classes: list[str], rule: str, max_drop: float) -> tuple[dict, dict]:
    """Calibrate the open-set rule on validation and measure it (export folds it in);
    returns the metrics and the gated model's per-class test accuracy."""
    from kws_research.models import gate
    from kws_research.training import evaluate

    validation = data.splits["validation"].labels
    value = gate.calibrate(validation, probs["validation"], classes, max_drop, rule)
    out = {gate.METRIC[rule]: value}
    gated_val = gate.apply(probs["validation"], value, classes, rule)
    out["gated_val_accuracy"] = evaluate.classification(validation, gated_val, classes)["accuracy"]
    per_class = {}
    if "test" in probs:
        adjusted = gate.apply(probs["test"], value, classes, rule)
        result = evaluate.classification(data.splits["test"].labels, adjusted, classes)
        out["gated_test_accuracy"] = result["accuracy"]
        per_class = result["per_class_accuracy"]
        out["gated_command_accuracy"] = evaluate.command_accuracy(data.splits["test"].labels, adjusted, classes)
    if "heldout" in probs:
        for key, metric in evaluate.open_set(gate.apply(probs["heldout"], value, classes, rule), classes).items():
            if key != "heldout_clips":
                out[f"gated_{key}"] = metric
    return out, per_class


def _evaluate_and_log(cfg, resolved: dict, data, model, client, run_id: str, history: dict,
                      metrics: Mapping) -> dict:
    """Test-split metrics and every artifact of the run contract."""
    from kws_research.tracking.runs import artifact_dir, log_artifacts
    from kws_research.training import evaluate, pipeline, plots

    batch = int(cfg.trainer.batch_size)
    classes = list(data.classes)
    openset = cfg.get("openset") or {}
    splits = ("validation", "test", "heldout") if openset.get("gate") else ("test", "heldout")
    probs = {split: evaluate.predict(model, pipeline.evaluation_dataset(data.splits[split], len(classes), batch))
             for split in splits if split in data.splits and len(data.splits[split])}
    final: dict[str, float] = {}
    test_result = None
    test = data.splits["test"]
    if "test" in probs:
        test_result = evaluate.classification(test.labels, probs["test"], classes)
        final["test_accuracy"] = test_result["accuracy"]
        final["test_loss"] = evaluate.cross_entropy(test.labels, probs["test"])
        final["command_accuracy"] = evaluate.command_accuracy(test.labels, probs["test"], classes)
    else:
        log.warning("the test split is empty: no test metrics")
    if "heldout" in probs:
        final.update(evaluate.open_set(probs["heldout"], classes))
    gated_per_class: dict = {}
    if openset.get("gate"):
        gated, gated_per_class = _gate_metrics(data, probs, classes, str(openset.get("rule", "threshold")),
                                               float(openset.get("max_command_drop", 0.01)))
        final.update(gated)
    summary = {**metrics, **final}
    with artifact_dir() as folder:
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
        (folder / "labels.json").write_text(json.dumps(classes))
        (folder / "model").mkdir()
        model.save(folder / "model" / "model.keras")
        (folder / "data_summary.json").write_text(json.dumps(data.summary, indent=1))
        title = f"{cfg.get('model_label') or model.name} on {data.name}"
        plots.training_curves_png(history, folder / "training_curves.png", title)
        if test_result is not None:
            plots.confusion_matrix_png(test_result["confusion"], classes, folder / "confusion_matrix.png",
                                       f"{title}: test split")
            report = dict(test_result["report"], per_class_accuracy=test_result["per_class_accuracy"])
            if gated_per_class:
                report["gated_per_class_accuracy"] = gated_per_class
            (folder / "classification_report.json").write_text(json.dumps(report, indent=1))
        (folder / "summary.json").write_text(json.dumps({"run_id": run_id, **summary}, indent=1))
        log_artifacts(client, run_id, folder)
    return final
