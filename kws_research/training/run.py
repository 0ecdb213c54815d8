"""One training run, start to finish, recorded in MLflow (the ``train`` stage's Python API).

Order matters for bad input: the config is validated and the data prepared
before an MLflow run exists, so a wrong key or a missing data root leaves no
run at all; anything failing after that ends the run FAILED with the reason.
This module only orchestrates: checks live in :mod:`.validation`, the open-set
rule in :mod:`.openset`, the run's files in :mod:`.artifacts`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE
from omegaconf import DictConfig, OmegaConf

from kws_research.contract import samples_of, to_float
from kws_research.data.dataset import cache_root, prepare
from kws_research.data.rooms import rooms_for
from kws_research.devices import device_label
from kws_research.errors import ConfigError
from kws_research.models import build_model, complexity
from kws_research.models.gate import calibrated_rule
from kws_research.models.registry import model_name
from kws_research.models.streaming import macs_per_hop
from kws_research.streaming.evaluation import log_evaluation
from kws_research.streaming.runs import check_streams, evaluate_model
from kws_research.streaming.settings import EVALUATION_SPLITS
from kws_research.tracking import store
from kws_research.tracking.datasets import log_dataset_input
from kws_research.tracking.logged_model import log_keras_model
from kws_research.tracking.runs import flatten, git_commit, log_metrics, log_params, tracked_run
from kws_research.training import evaluate, optim, pipeline, precision, stream_windows
from kws_research.training.artifacts import log_run_artifacts
from kws_research.training.augment import AugmentSettings, WaveformAugmenter
from kws_research.training.callbacks import EpochLogger, InterruptCheck, NonFiniteLoss
from kws_research.training.memory import released_custom_gradients
from kws_research.training.openset import gate_metrics
from kws_research.training.result import RunHooks, TrainResult
from kws_research.training.stream_windows import StreamWindowSettings
from kws_research.training.validation import validate

log = logging.getLogger(__name__)


def _verbosity(setting) -> int:
    if setting in (None, "auto"):
        return 1 if sys.stdout.isatty() else 2
    return int(setting)


def model_label(cfg: DictConfig) -> str:
    return str(cfg.get("model_label") or model_name(cfg.model))


def run_training(cfg: DictConfig, hooks: RunHooks | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.dataset`` and record everything in MLflow."""
    hooks = hooks or RunHooks()
    validate(cfg)
    dataset_cfg, stream_cfg = (OmegaConf.to_container(cfg[k], resolve=True) for k in ("dataset", "stream"))
    data = prepare(dataset_cfg)
    if not len(data.splits["train"]) or not len(data.splits["validation"]):
        raise ConfigError(
            "dataset", f"{data.name}: the train or validation split is empty; check the split lists or percentages"
        )
    if cfg.stream_eval:
        check_streams(data, dataset_cfg, stream_cfg, EVALUATION_SPLITS[cfg.stream_eval])
    stream_windows.check(data, dataset_cfg, stream_cfg, StreamWindowSettings.from_config(cfg.get("stream_windows")))
    client = store.client_for(cfg.tracking)
    experiment = store.experiment_id(client, cfg.tracking, cfg.tracking.get("experiment") or data.name)
    label = model_label(cfg)
    tags = {
        "role": str(cfg.role),
        "model": label,
        "dataset": data.name,
        "dataset_fingerprint": data.fingerprint,
        "test_fingerprint": data.test_fingerprint,
        "git_commit": git_commit(),
        "seed": str(cfg.seed),
        "device": device_label(),
        "precision": str(cfg.trainer.precision),
        **hooks.tags,
    }
    run_name = cfg.tracking.get("run_name") or f"{tags['role']}-{label}"
    resolved = OmegaConf.to_container(cfg, resolve=True)
    with tracked_run(client, experiment, run_name, tags, hooks.parent_run_id) as run_id:
        if hooks.on_start is not None:
            hooks.on_start(run_id)
        log.info("MLflow run %s (%s) in experiment %s", run_id, run_name, experiment)
        log_params(client, run_id, flatten(resolved))
        log_dataset_input(client, run_id, data)
        with released_custom_gradients():
            return _train_in_run(cfg, resolved, data, client, run_id, hooks)


def fresh_session(seed: int, deterministic: bool = True) -> None:
    """Clear Keras' global state, then seed: clearing after seeding would drop the seed
    Keras stores for its global seed generator."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def _train_in_run(cfg, resolved: dict, data, client, run_id: str, hooks: RunHooks) -> TrainResult:
    fresh_session(int(cfg.seed), bool(cfg.trainer.deterministic))
    num_classes = len(data.classes)
    with precision.policy(str(cfg.trainer.precision)):
        model = build_model(cfg.model, num_classes)
    sizes = complexity(model)
    per_hop = macs_per_hop(model, samples_of(float(cfg.stream.hop_ms)))
    if per_hop is not None:  # the streaming model's cost, one call every stream.hop_ms
        sizes["macs_per_hop"] = per_hop
    log_metrics(client, run_id, {k: float(v) for k, v in sizes.items()})
    if hooks.check_model is not None:
        reason = hooks.check_model(model, sizes)
        if reason:
            client.set_tag(run_id, "stopped", reason)
            return TrainResult(run_id, dict(sizes), stopped=reason)

    epochs, batch = int(cfg.trainer.epochs), int(cfg.trainer.batch_size)
    windows = StreamWindowSettings.from_config(cfg.get("stream_windows"))
    dataset_cfg, stream_cfg = resolved["dataset"], resolved["stream"]
    examples = stream_windows.training_examples(
        data.splits["train"], data, dataset_cfg, stream_cfg, windows, int(cfg.seed)
    )
    steps = pipeline.steps_per_epoch(examples, batch)
    if windows.active:
        log_metrics(client, run_id, {"stream_windows_per_epoch": float(len(examples) - len(data.splits["train"]))})
    optimizer, loss, schedule_callbacks = optim.build(cfg.optimizer, steps, epochs)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    settings = AugmentSettings.from_config(cfg.augment)
    rooms = rooms_for(settings.rooms, cache_root(cfg.dataset)) if settings.reverb else None
    augmenter = (
        WaveformAugmenter(settings, data.noise, data.noise_segments("train"), int(cfg.seed), rooms)
        if settings.active
        else None
    )
    val_ds = pipeline.evaluation_dataset(data.splits["validation"], num_classes, batch)

    patience = cfg.trainer.get("early_stopping_patience") or epochs
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_accuracy", mode="max", patience=patience, restore_best_weights=True, verbose=0
    )
    epoch_logger = EpochLogger(client, run_id)
    callbacks = [epoch_logger, InterruptCheck(), NonFiniteLoss(), *schedule_callbacks, *hooks.callbacks]
    started = time.perf_counter()
    first = max(1, epochs - windows.mining_epochs_total())
    segments = [(0, first)] + [
        (e, min(epochs, e + windows.mining_epochs)) for e in range(first, epochs, windows.mining_epochs)
    ]
    for index, (begin, end) in enumerate(segments):
        if index:  # a mining round: early stopping chose the weights it goes on from
            log_metrics(
                client,
                run_id,
                stream_windows.mine_round(
                    model, examples, data, dataset_cfg, stream_cfg, windows, index - 1, int(cfg.seed)
                ),
                step=index,
            )
        model.fit(
            pipeline.training_dataset(examples, num_classes, batch, int(cfg.seed), augmenter, first_epoch=begin),
            validation_data=val_ds,
            initial_epoch=begin,
            epochs=end,
            steps_per_epoch=steps,
            callbacks=callbacks + ([stopper] if not index else []),
            shuffle=False,
            verbose=_verbosity(cfg.trainer.get("verbose")),
        )
        if any(getattr(cb, "stop_reason", None) for cb in hooks.callbacks):
            break
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
        **({"macs_per_hop": sizes["macs_per_hop"]} if "macs_per_hop" in sizes else {}),
    }
    stop_reasons = [getattr(cb, "stop_reason", None) for cb in hooks.callbacks]
    stopped = next((r for r in stop_reasons if r), None)
    if stopped:
        client.set_tag(run_id, "stopped", stopped)
        log_metrics(client, run_id, metrics)
        return TrainResult(run_id, metrics, stopped=stopped, intermediate=val_history)
    model = precision.float32_copy(model, cfg.model, num_classes)
    metrics.update(_evaluate_and_log(cfg, resolved, data, model, client, run_id, history, metrics))
    log_metrics(client, run_id, metrics)
    example = to_float(np.asarray(data.splits["validation"].audio[:1]))
    model_id = log_keras_model(client, run_id, model, example, {"dataset": data.name, "model": model_label(cfg)})
    client.set_tag(run_id, MLFLOW_RUN_NOTE, _description(cfg, data, metrics, model_id))
    return TrainResult(run_id, metrics, intermediate=val_history)


def _description(cfg, data, metrics: Mapping, model_id: str) -> str:
    """The run page's description: what was trained on what, and how well."""
    test = f", test accuracy {metrics['test_accuracy']:.3f}" if "test_accuracy" in metrics else ""
    return (
        f"{model_label(cfg)} on {data.name} ({len(data.classes)} classes: {', '.join(data.classes)}): "
        f"best validation accuracy {metrics['best_val_accuracy']:.3f} at epoch {metrics['best_epoch']}{test}; "
        f"{metrics['params']:,.0f} parameters, {metrics['macs']:,.0f} MACs; "
        f"{metrics['epochs_run']} epochs in {metrics['train_seconds']:.0f} s. "
        f"Logged model {model_id}: mlflow.pyfunc.load_model('models:/{model_id}')."
    )


def _evaluate_and_log(cfg, resolved: dict, data, model, client, run_id: str, history: dict, metrics: Mapping) -> dict:
    """Validation command accuracy, test-split metrics and every artifact of the run contract."""
    batch = int(cfg.trainer.batch_size)
    classes = list(data.classes)
    openset = cfg.openset
    probs = {
        split: evaluate.predict(model, pipeline.evaluation_dataset(data.splits[split], len(classes), batch))
        for split in ("validation", "test", "heldout")
        if split in data.splits and len(data.splits[split])
    }
    final: dict[str, float] = {}
    if "validation" in probs:
        final["val_command_accuracy"] = evaluate.command_accuracy(
            data.splits["validation"].labels, probs["validation"], classes
        )
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
    if openset.gate:
        confidence = None if openset.confidence is None else float(openset.confidence)
        gated, gated_per_class = gate_metrics(
            data, probs, classes, str(openset.rule), float(openset.max_command_drop), confidence
        )
        final.update(gated)
    title = f"{cfg.get('model_label') or model.name} on {data.name}"
    if cfg.stream_eval:
        final.update(_stream_evaluation(cfg, data, model, client, run_id, final, title))
    summary = {**metrics, **final}
    log_run_artifacts(client, run_id, resolved, data, model, history, title, test_result, gated_per_class, summary)
    return final


def _stream_evaluation(cfg, data, model, client, run_id: str, final: dict, title: str) -> dict:
    """``stream_eval=true``: the streaming evaluation of the model as export ships it
    (``stream_eval=validation``: its calibration on the validation streams alone)."""
    rule = calibrated_rule(final)  # openset.gate=true: the rule export folds in
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    stream = OmegaConf.to_container(cfg.stream, resolve=True)
    evaluation = evaluate_model(model, data, dataset, stream, rule, EVALUATION_SPLITS[cfg.stream_eval])
    log_evaluation(client, run_id, evaluation, title)
    return evaluation.metrics
