"""Training on the windows the detector meets: labels from word times, the window pool, and
mining rounds inside a run (training audio only)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.data import tiny_overrides
from helpers.stages import TINY_STREAMS
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from kws_research.config import compose
from kws_research.contract import CLIP_SAMPLES
from kws_research.data.dataset import prepare
from kws_research.errors import KwsError
from kws_research.labels import SILENCE, UNKNOWN
from kws_research.streaming.windows import NOT_USED, window_labels
from kws_research.training import stream_windows
from kws_research.training.pipeline import ClipExamples
from kws_research.training.stream_windows import StreamWindowSettings, WindowPool

CLASSES = [SILENCE, UNKNOWN, "yes", "no"]
EVENTS = [
    {"label": "yes", "kind": "command", "start": 2.0, "end": 2.6},
    {"label": UNKNOWN, "kind": "unknown", "start": 4.0, "end": 4.5},
    {"label": "no", "kind": "command", "start": 6.0, "end": 6.4},
    {"label": UNKNOWN, "kind": "unknown", "start": 6.5, "end": 7.2},
]


def labelled(*starts: float, talk: bool = False) -> list[str]:
    found = window_labels(np.array(starts), EVENTS, CLASSES, 0.9, 0.5, talk)
    return ["-" if i == NOT_USED else CLASSES[i] for i in found]


def test_a_window_is_its_command_only_when_the_command_is_wholly_inside():
    assert labelled(1.7, 1.95, 2.02) == ["yes", "yes", "yes"]  # all of it, or 0.58 of 0.6 s (97%)
    assert labelled(1.5) == ["-"]  # 0.5 of 0.6 s: 83%, neither clearly the command nor clearly not
    assert labelled(2.3, 1.3) == [UNKNOWN, UNKNOWN]  # half of it (its end, its onset): not the command
    assert labelled(2.58) == [SILENCE]  # 20 ms of a word's end is no speech heard


def test_other_speech_is_unknown_and_no_speech_is_silence_unless_talk_plays_under():
    assert labelled(3.2, 4.4, 8.0) == [UNKNOWN, UNKNOWN, SILENCE]
    assert labelled(8.0, talk=True) == [UNKNOWN]
    assert labelled(5.8) == ["no"]  # the command, with the next word's onset: the app should fire
    assert labelled(6.2) == [UNKNOWN]  # half of the command and the next word


def test_the_pool_turns_over_each_epoch_and_mined_windows_take_their_share():
    audio = (np.arange(CLIP_SAMPLES * 4) % 30000).astype(np.int16)
    offsets = np.arange(0, 3 * CLIP_SAMPLES, 160, dtype=np.int64)
    labels = offsets % 4
    pool = WindowPool(audio, offsets, labels, per_epoch=50, seed=0)
    first, first_labels = pool.rows(np.arange(50), epoch=0)
    second, _ = pool.rows(np.arange(50), epoch=1)
    starts = first[:, 0].astype(np.int64)  # each row is the audio from its offset on
    assert np.array_equal(first, np.stack([audio[s : s + CLIP_SAMPLES] for s in starts]))
    assert np.array_equal(first_labels, starts % 4)
    assert not set(starts) & set(second[:, 0].astype(np.int64))  # the next epoch: other windows
    pool.add_mined(np.full((30, CLIP_SAMPLES), 7, np.int16), label=1, share=0.4)
    rows, labels = pool.rows(np.arange(50), epoch=0)
    assert (rows[:20] == 7).all() and (labels[:20] == 1).all() and (rows[20:] != 7).any()


def test_stream_window_settings_are_checked_with_the_key():
    with pytest.raises(KwsError, match=r"stream_windows\.partial_below"):
        StreamWindowSettings.from_config({"partial_below": 0.95})
    with pytest.raises(KwsError, match=r"stream_windows\.mining_rounds"):
        StreamWindowSettings.from_config({"mining_rounds": 1})
    with pytest.raises(KwsError, match=r"stream_windows\.context"):
        StreamWindowSettings.from_config({"context": 1.5})
    with pytest.raises(KwsError, match=r"stream_windows\.nope: no such key"):
        StreamWindowSettings.from_config({"nope": 1})
    budget = StreamWindowSettings.from_config({"share": 0.3, "mining_rounds": 2, "mining_epochs": 2})
    budget.check_budget(5)
    with pytest.raises(KwsError, match=r"^stream_windows\.mining_rounds: 2 rounds .* trainer.epochs=4 leaves none"):
        budget.check_budget(4)


def test_context_puts_other_speech_beside_a_share_of_the_commands_only():
    from kws_research.data.cache import SplitArrays
    from kws_research.training.context import ContextClips

    audio = np.zeros((40, CLIP_SAMPLES), np.int16)
    audio[:, 6000:10000] = 5000  # the word, centred: its extent is [6000, 10000)
    labels = np.array([CLASSES.index(name) for name in ["yes", "no", UNKNOWN, SILENCE] * 10])
    audio[labels == CLASSES.index(SILENCE)] = 0
    clips = ClipExamples(SplitArrays(audio, labels, ["test"] * 40))
    index = np.arange(40)
    none = ContextClips(clips, CLASSES, share=0.0, seed=0).rows(index, epoch=0)
    assert np.array_equal(none[0], audio) and np.array_equal(none[1], labels)
    heard = ContextClips(clips, CLASSES, share=1.0, seed=0)
    rows, got = heard.rows(index, epoch=0)
    assert np.array_equal(got, labels)
    commands = np.isin(labels, [CLASSES.index("yes"), CLASSES.index("no")])
    assert np.array_equal(rows[~commands], audio[~commands])  # unknown and silence clips as they were
    assert np.array_equal(rows[:, 6000:10000], audio[:, 6000:10000])  # the command itself untouched
    beside = (rows[commands][:, :6000] != 0).any(axis=1) | (rows[commands][:, 10000:] != 0).any(axis=1)
    assert beside.all()  # every command heard with speech before or after it
    assert np.array_equal(heard.rows(index, epoch=0)[0], rows)  # seeded by (seed, epoch, row)
    assert not np.array_equal(heard.rows(index, epoch=1)[0], rows)  # another epoch, other contexts
    half = ContextClips(clips, CLASSES, share=0.5, seed=0).rows(index, epoch=0)[0]
    assert 0 < (half[commands] != audio[commands]).any(axis=1).sum() < commands.sum()


def test_the_train_config_key_puts_context_on_the_training_clips(tone_root, tmp_path):
    from kws_research.training.context import ContextClips

    cfg = compose("train", tiny_overrides(tone_root, tmp_path, "stream_windows.context=1.0"))
    dataset_cfg, stream_cfg = (OmegaConf.to_container(cfg[k], resolve=True) for k in ("dataset", "stream"))
    data = prepare(dataset_cfg)
    settings = StreamWindowSettings.from_config(cfg.stream_windows)
    examples = stream_windows.training_examples(data.splits["train"], data, dataset_cfg, stream_cfg, settings, 0)
    assert isinstance(examples, ContextClips) and len(examples) == len(data.splits["train"])
    index = np.arange(len(examples))
    rows, labels = examples.rows(index, epoch=0)
    plain, plain_labels = ClipExamples(data.splits["train"]).rows(index, 0)
    commands = ~np.isin(labels, [data.classes.index(SILENCE), data.classes.index(UNKNOWN)])
    assert np.array_equal(labels, plain_labels) and commands.any()
    assert (rows[commands] != plain[commands]).any(axis=1).mean() > 0.5
    assert np.array_equal(rows[~commands], plain[~commands])


def test_windows_come_from_training_streams_only(tone_root, tmp_path):
    cfg = compose("train", tiny_overrides(tone_root, tmp_path, "stream_windows.share=0.5", *TINY_STREAMS))
    dataset_cfg, stream_cfg = (OmegaConf.to_container(cfg[k], resolve=True) for k in ("dataset", "stream"))
    data = prepare(dataset_cfg)
    settings = StreamWindowSettings.from_config({"share": 0.5, "minutes": 1})
    examples = stream_windows.training_examples(data.splits["train"], data, dataset_cfg, stream_cfg, settings, 0)
    assert len(examples) == 2 * len(data.splits["train"])
    counts = examples.pool.class_counts(list(data.classes))
    assert all(counts[c] > 0 for c in data.classes), counts
    built = sorted(p.name.split("-")[0] for p in (tmp_path / "cache" / "streams").iterdir() if p.is_dir())
    assert built == ["train", "train"]
    rows, labels = examples.rows(np.arange(len(examples)), epoch=0)
    clips = ClipExamples(data.splits["train"]).rows(np.arange(len(data.splits["train"])), 0)
    assert np.array_equal(rows[: len(clips[0])], clips[0]) and np.array_equal(labels[: len(clips[1])], clips[1])


def test_a_run_mines_its_own_training_talk_in_rounds(tone_root, tmp_path):
    from kws_research.train import train

    overrides = tiny_overrides(
        tone_root,
        tmp_path,
        "model=tc_resnet",
        "trainer.epochs=3",
        "stream_windows.share=0.3",
        "stream_windows.minutes=1",
        "stream_windows.mining_rounds=2",
        "stream_windows.mining_epochs=1",
        "stream_windows.mining_minutes=1",
        *TINY_STREAMS,
    )
    result = train(compose("train", overrides))
    assert result.metrics["epochs_run"] == 3
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    rounds = client.get_metric_history(result.run_id, "mined_windows")
    assert [m.step for m in rounds] == [1, 2]
    fa = client.get_metric_history(result.run_id, "mining_fa_per_hour")
    assert [m.step for m in fa] == [1, 2] and all((f.value > 0) == (m.value > 0) for f, m in zip(fa, rounds))
    streams_built = {p.name.split("-")[0] for p in (tmp_path / "cache" / "streams").iterdir() if p.is_dir()}
    assert streams_built == {"train"}  # no validation or test stream was heard while training


def test_a_mining_round_adds_the_windows_a_model_fires_on_as_unknown(tone_root, tmp_path):
    import keras

    cfg = compose("train", tiny_overrides(tone_root, tmp_path, *TINY_STREAMS))
    dataset_cfg, stream_cfg = (OmegaConf.to_container(cfg[k], resolve=True) for k in ("dataset", "stream"))
    data = prepare(dataset_cfg)
    classes = list(data.classes)
    settings = StreamWindowSettings.from_config({"share": 0.5, "minutes": 1, "mining_rounds": 1, "mining_minutes": 1})
    examples = stream_windows.training_examples(data.splits["train"], data, dataset_cfg, stream_cfg, settings, 0)
    says_yes = np.zeros(len(classes))
    says_yes[classes.index("yes")] = 6.0
    inputs = keras.Input((CLIP_SAMPLES,))
    outputs = keras.layers.Dense(
        len(classes), "softmax", kernel_initializer="zeros", bias_initializer=keras.initializers.Constant(says_yes)
    )(inputs)
    metrics = stream_windows.mine_round(
        keras.Model(inputs, outputs), examples, data, dataset_cfg, stream_cfg, settings, 0, 0
    )
    mined = examples.pool.mined
    assert metrics["mined_windows"] == len(mined) >= 1 and metrics["mining_fa_per_hour"] >= 60  # 1 min of stream
    assert examples.pool.mined_label == classes.index(UNKNOWN)
    rows, labels = examples.pool.rows(np.arange(examples.pool.per_epoch), epoch=0)
    quota = examples.pool.mined_quota
    assert quota == min(len(mined), examples.pool.per_epoch // 2)
    assert np.array_equal(rows[:quota], mined[:quota]) and (labels[:quota] == classes.index(UNKNOWN)).all()
    built = {p.name.split("-")[0] for p in (tmp_path / "cache" / "streams").iterdir() if p.is_dir()}
    assert built == {"train"}  # mined from a training stream


@pytest.mark.slow  # two trials end to end; make test runs it, make test-fast does not
def test_the_stream_sweep_searches_on_validation_streams_only(tone_root, tmp_path):
    from kws_research.sweeping.coordinator import run_sweep
    from kws_research.sweeping.definition import load

    tiny = [
        "dataset=speech_commands",
        f"dataset.root={tone_root}",
        f"dataset.cache_dir={tmp_path}/cache",
        "dataset.commands=[yes,no,up]",
        "dataset.unknown_sources.speech=0",  # no synthetic voices here: the root's words and its talk
        "dataset.unknown_sources.spliced=0",
        f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
        f"tracking.artifact_location={tmp_path}/mlartifacts",
        "trainer.epochs=3",
        "trainer.batch_size=16",
        "trainer.verbose=0",
        "augment.reverb=0",
        "stream_windows.mining_epochs=1",
        "stream.reverb=0",
        "stream_windows.minutes=1",
        "stream_windows.mining_minutes=1",
        *TINY_STREAMS,
    ]
    definition = load(
        ["sweep=stream", "n_trials=2", f"storage=sqlite:///{tmp_path}/optuna.db", "params.model=choice(tc_resnet)"]
        + ["export.enabled=false", *tiny]
    )
    result = run_sweep(definition)
    assert result["n_complete"] == 2, result
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    trials = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.role = 'trial'")
    for run in trials:
        metrics = run.data.metrics
        value = metrics["val_stream_fa_per_hour_at_50pct_miss"]
        assert 0 <= value <= 36000.0 and "detector_threshold" in metrics
        assert "stream_hit_rate" not in metrics and "stream_fa_per_hour" not in metrics  # no test stream scored
        assert run.data.tags["stream_settings"].split("/")[0].endswith("+validation-only")
    assert result["best_value"] == min(r.data.metrics["val_stream_fa_per_hour_at_50pct_miss"] for r in trials)
    built = {p.name.split("-")[0] for p in (tmp_path / "cache" / "streams").iterdir() if p.is_dir()}
    assert "test" not in built and "validation" in built
