"""Open-set unknown: every source of the unknown class, and the held-out-word metrics."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from helpers.data import tiny_overrides, tone_dataset_cfg, word_clip
from helpers.stages import TINY_STREAMS
from mlflow.tracking import MlflowClient

from kws_research.config import compose
from kws_research.contract import SAMPLE_RATE
from kws_research.data.dataset import prepare
from kws_research.data.unknown import split_counts, vocabulary
from kws_research.errors import KwsError
from kws_research.train import train
from kws_research.training import evaluate


def sources_cfg(tone_root, cache, **sources):
    return tone_dataset_cfg(tone_root, cache, unknown_sources=sources, unknown_percentage=100.0)


def rows_of(data, split, prefix):
    arrays = data.splits[split]
    return [(i, s) for i, s in enumerate(arrays.sources) if s.startswith(prefix)]


ECHO = '''"""``echo``: a throw-away source for the test: command clips at half volume."""

from kws_research.data.items import Item
from kws_research.data.sources import UnknownSource


class Echo(UnknownSource):
    def candidates(self, ctx):
        commands = [entries for word, entries in sorted(ctx.words.items()) if word in ctx.commands]
        return [Item("unknown", "echo", (e.path,)) for entries in commands for e in entries]

    def render(self, item, decoded):
        return decoded[item.paths[0]] // 2


SOURCE = Echo()
'''


def test_a_new_source_is_one_module_found_by_name(tone_root, tmp_path, monkeypatch):
    import zlib

    from kws_research.data import sources

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "echo.py").write_text(ECHO)
    before = prepare(sources_cfg(tone_root, tmp_path / "a", words=1.0, reversed=1.0))
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sources, "__path__", [*sources.__path__, str(plugins)])
            sources.forget()
            assert sources.get("echo").key == zlib.crc32(b"echo")  # keyed by its name, not its place
            data = prepare(sources_cfg(tone_root, tmp_path / "c", words=1.0, reversed=1.0, echo=1.0))
            unchanged = prepare(sources_cfg(tone_root, tmp_path / "d", words=1.0, reversed=1.0))
    finally:
        sources.forget()
    counts = data.summary["unknown_sources"]["train"]
    assert counts["echo"] > 0 and counts["words"] > 0 and counts["reversed"] > 0
    echoes = rows_of(data, "train", "echo:")
    assert len(echoes) == counts["echo"]
    index, name = echoes[0]
    original = np.asarray(before.splits["train"].audio)[before.splits["train"].sources.index(name[len("echo:") :])]
    assert np.array_equal(np.asarray(data.splits["train"].audio)[index], original // 2)
    assert unchanged.fingerprint == before.fingerprint  # a source with no share changes no data set


def test_shares_split_the_training_unknowns_and_eval_keeps_the_words(tone_root, tmp_path):
    data = prepare(sources_cfg(tone_root, tmp_path / "c", words=1.0, reversed=1.0, spliced=2.0))
    train_counts = data.summary["unknown_sources"]["train"]
    assert train_counts == split_counts(
        sum(train_counts.values()), (("words", 1.0), ("reversed", 1.0), ("spliced", 2.0))
    )
    assert train_counts["spliced"] == 2 * train_counts["reversed"] > 0
    assert data.summary["unknown_sources"]["validation"] == {"words": data.summary["counts"]["validation"]["unknown"]}
    again = prepare(sources_cfg(tone_root, tmp_path / "d", words=1.0, reversed=1.0, spliced=2.0))
    assert again.splits["train"].sources == data.splits["train"].sources
    assert np.array_equal(np.asarray(again.splits["train"].audio), np.asarray(data.splits["train"].audio))


def test_reversed_clips_are_their_source_backwards(tone_root, tmp_path):
    data = prepare(sources_cfg(tone_root, tmp_path / "c", reversed=1.0))
    rows = rows_of(data, "train", "reversed:")
    assert rows
    for index, source in rows[:5]:
        original, _ = sf.read(tone_root / source.split(":", 1)[1], dtype="int16")
        clip = np.asarray(data.splits["train"].audio[index])
        assert np.array_equal(clip, original[::-1]) and not np.array_equal(clip, original)


def test_spliced_clips_join_two_different_words(tone_root, tmp_path):
    data = prepare(sources_cfg(tone_root, tmp_path / "c", spliced=1.0))
    rows = rows_of(data, "train", "spliced:")
    assert rows
    for index, source in rows[:5]:
        first, second = source.split(":", 1)[1].split("+")
        assert first.split("/")[0] != second.split("/")[0]
        clip = np.asarray(data.splits["train"].audio[index]).astype(float)
        a = sf.read(tone_root / first, dtype="int16")[0].astype(float)
        b = sf.read(tone_root / second, dtype="int16")[0].astype(float)
        assert not np.array_equal(clip, a) and not np.array_equal(clip, b)
        spectrum = np.abs(np.fft.rfft(clip))
        peak_a, peak_b = np.argmax(np.abs(np.fft.rfft(a))), np.argmax(np.abs(np.fft.rfft(b)))
        assert spectrum[peak_a] > 0.1 * spectrum.max() and spectrum[peak_b] > 0.1 * spectrum.max()


def test_partial_clips_are_the_onset_of_a_command_word_and_silence_after(tone_root, tmp_path):
    from kws_research.data.audio import speech_extent

    data = prepare(sources_cfg(tone_root, tmp_path / "c", words=1.0, partial=1.0))
    assert data.summary["unknown_sources"]["train"]["partial"] > 0
    assert "partial" not in data.summary["unknown_sources"]["validation"]  # eval keeps the words
    rows = rows_of(data, "train", "partial:")
    assert rows and len(rows) == data.summary["unknown_sources"]["train"]["partial"]
    unknown = data.classes.index("unknown")
    for index, source in rows:
        path, fraction = source.split(":", 1)[1].rsplit("@", 1)
        assert path.split("/")[0] in ("yes", "no", "up")  # a command word, labelled unknown
        assert data.splits["train"].labels[index] == unknown and 0.4 <= float(fraction) <= 0.6
        original = sf.read(tone_root / path, dtype="int16")[0]
        clip = np.asarray(data.splits["train"].audio[index])
        start, end = speech_extent(original)
        cut = start + int(round((end - start) * float(fraction)))
        assert np.array_equal(clip[:cut], original[:cut]) and not clip[cut:].any()
    again = prepare(sources_cfg(tone_root, tmp_path / "d", words=1.0, partial=1.0))
    assert again.splits["train"].sources == data.splits["train"].sources  # seeded


def test_synthetic_unknowns_never_speak_a_command_a_homophone_or_a_heldout_word(tone_root, tmp_path, monkeypatch):
    words = tmp_path / "words.txt"
    words.write_text("# test vocabulary\nyes\nknow\nwrite\ndog\napple\nriver\nsugar\npaper\n")
    assert vocabulary(("yes", "no", "right"), ("dog",), str(words)) == ["apple", "paper", "river", "sugar"]
    monkeypatch.chdir(tmp_path)  # a relative cache_dir, as in the default config
    cfg = sources_cfg(tone_root, "c", synthetic=1.0)
    cfg.update(
        commands=["yes", "no", "up"],
        heldout_unknown_words=["dog"],
        synthetic_unknown={"vocabulary": str(words), "speakers": 3},
    )
    data = prepare(cfg)
    rows = rows_of(data, "train", "/")  # synthetic clips have absolute paths
    spoken = {s.split("/")[-2] for _, s in rows}
    assert spoken and spoken <= {"apple", "river", "sugar", "paper", "write"}  # "right" is no command here
    assert data.summary["unknown_sources"]["train"]["synthetic"] == len(rows)
    assert data.summary["n_skipped"] == 0
    again = prepare(dict(cfg, cache_dir=str(tmp_path / "c2")))
    assert again.fingerprint == data.fingerprint  # regenerated elsewhere, identical audio
    assert np.array_equal(np.asarray(again.splits["train"].audio), np.asarray(data.splits["train"].audio))


def test_a_folder_of_extra_clips_is_a_source(tone_root, tmp_path, monkeypatch):
    folder = tmp_path / "mine" / "nested"
    folder.mkdir(parents=True)
    for i in range(12):
        sf.write(folder / f"speaker{i}_word.wav", word_clip(6, i, 0), SAMPLE_RATE, subtype="PCM_16")
    cfg = sources_cfg(tone_root, tmp_path / "c", words=1.0, folder=1.0)
    monkeypatch.chdir(tmp_path)
    cfg["unknown_folder"] = "mine"  # relative to where the stage runs, not to the data root
    data = prepare(cfg)
    assert data.summary["unknown_sources"]["train"]["folder"] > 0 and data.summary["n_skipped"] == 0
    assert any(s.startswith(str(tmp_path / "mine")) for s in data.splits["train"].sources)
    with pytest.raises(KwsError, match="unknown_folder"):
        prepare(dict(cfg, unknown_folder=str(tmp_path / "none")))
    with pytest.raises(KwsError, match="unknown source"):
        prepare(sources_cfg(tone_root, tmp_path / "c", noises=1.0))


def test_heldout_words_are_measured_as_unseen(tone_root, tmp_path):
    overrides = tiny_overrides(tone_root, tmp_path, "model=tc_resnet", "dataset.heldout_unknown_words=[dog]")
    cfg = compose("train", overrides)
    data = prepare(cfg.dataset)
    assert not [
        s for split in ("train", "validation", "test") for s in data.splits[split].sources if s.startswith("dog/")
    ]
    assert len(data.splits["heldout"]) == 12 and set(data.splits["heldout"].labels) == {1}
    result = train(cfg)
    metrics = MlflowClient(cfg.tracking.uri).get_run(result.run_id).data.metrics
    assert 0 <= metrics["unseen_unknown_recall"] <= 1 and 0 <= metrics["false_command_rate"] <= 1
    assert metrics["unseen_unknown_recall"] + metrics["false_command_rate"] <= 1 + 1e-9
    assert metrics["heldout_clips"] == 12 and "command_accuracy" in metrics


@pytest.mark.parametrize(
    "rule,metric,meta_key,label",
    [
        ("threshold", "gate_threshold", "confidence_gate_threshold", "confidence gate"),
        ("prior", "gate_unknown_weight", "unknown_prior_weight", "unknown prior"),
    ],
)
@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_the_open_set_rule_is_calibrated_measured_and_folded_into_core_ml(
    tone_root, tmp_path, rule, metric, meta_key, label
):
    from omegaconf import OmegaConf

    from kws_research.exporting.stage import export_run
    from kws_research.models.gate import NEUTRAL

    overrides = tiny_overrides(
        tone_root,
        tmp_path,
        "model=tc_resnet",
        "dataset.heldout_unknown_words=[dog]",
        "openset.gate=true",
        f"openset.rule={rule}",
        "openset.max_command_drop=0.8",  # a few validation command clips: a wide bound on their share lost
    )
    result = train(compose("train", overrides))
    metrics = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db").get_run(result.run_id).data.metrics
    assert metrics[metric] > NEUTRAL[rule]  # calibrated to a setting that does something
    assert metrics["gate_command_cost"] < metrics["gate_command_cost_bound"] <= 0.8
    assert metrics["gated_unseen_unknown_recall"] >= metrics["unseen_unknown_recall"]
    assert metrics["gated_false_command_rate"] <= metrics["false_command_rate"]
    cfg = OmegaConf.to_container(
        compose(
            "export",
            [
                f"run_id={result.run_id}",
                f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
                f"tracking.artifact_location={tmp_path}/mlartifacts",
                "baseline=skip",
                f"output_dir={tmp_path}/out",
                *TINY_STREAMS,  # the rule, the temperature and the detector shipped together
            ],
        ),
        resolve=True,
    )
    exported = export_run(cfg)
    assert exported["coreml_verified"] and label in exported["comparison"]
    exported_column = {
        line.split("|")[1].strip(): line.split("|")[-2].strip()
        for line in exported["comparison"].splitlines()
        if line.startswith("| ")
    }
    # every row of the exported column measures the gated model, as its Core ML row does
    assert exported_column["test accuracy (Keras)"] == f"{100 * metrics['gated_test_accuracy']:.1f}%"
    assert exported_column["validation accuracy"] == f"{100 * metrics['gated_val_accuracy']:.1f}%"
    import coremltools as ct

    meta = ct.models.MLModel(exported["files"][0], skip_model_load=True).user_defined_metadata
    assert float(meta[meta_key]) == metrics[metric]
    assert "detector_threshold" in meta and all(c["stream_mismatches"] == 0 for c in exported["checks"])


def test_the_unknown_prior_layer_matches_its_numpy_rule_and_calibration_keeps_the_budget():
    from kws_research.models.gate import UnknownPrior, apply, calibrate

    classes = ["silence", "unknown", "yes", "no"]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 4)) * 2
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    labels = rng.integers(0, 4, 400)
    labels[:200] = probs[:200].argmax(1)  # a model right half the time
    layer_out = np.asarray(UnknownPrior(7.5, 1)(probs))
    np.testing.assert_allclose(layer_out, apply(probs, 7.5, classes, "prior"), atol=1e-6)
    base = evaluate.command_accuracy(labels, probs, classes)
    weights = [calibrate(labels, probs, classes, drop, "prior") for drop in (0.0, 0.02, 0.1)]
    assert 1.0 <= weights[0] <= weights[1] <= weights[2] and weights[2] > 1.0
    for drop, weight in zip((0.0, 0.02, 0.1), weights):
        assert evaluate.command_accuracy(labels, apply(probs, weight, classes, "prior"), classes) >= base - drop - 1e-9
    unknown_share = [(apply(probs, w, classes, "prior").argmax(1) == 1).mean() for w in weights]
    assert unknown_share[0] <= unknown_share[1] <= unknown_share[2] and unknown_share[2] > unknown_share[0]


@pytest.mark.parametrize("rule", ["threshold", "prior"])
def test_with_a_confidence_the_rule_keeps_a_margin_for_clips_it_was_not_calibrated_on(rule):
    from scipy.stats import beta

    from kws_research.models.gate import CANDIDATES, calibrate, clips_needed, command_cost, lost_commands

    classes = ["silence", "unknown", "yes", "no"]
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 2000)
    logits = rng.normal(size=(2000, 4)) * 1.5
    logits[np.arange(2000), labels] += 2.5  # right three times in four, as a small trained model is
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    on_validation = calibrate(labels, probs, classes, 0.02, rule)
    with_margin = calibrate(labels, probs, classes, 0.02, rule, confidence=0.95)
    assert with_margin < on_validation
    lost, clips = lost_commands(labels, probs, with_margin, classes, rule)
    assert clips == int(np.isin(labels, [2, 3]).sum()) and lost >= 1
    bound = command_cost(lost, clips, 0.95)
    assert lost / clips < bound <= 0.02 and bound == pytest.approx(beta.ppf(0.95, lost + 1, clips - lost))
    assert command_cost(*lost_commands(labels, probs, on_validation, classes, rule), None) <= 0.02
    stronger = CANDIDATES[rule][CANDIDATES[rule] > with_margin][0]
    assert command_cost(*lost_commands(labels, probs, stronger, classes, rule), 0.95) > 0.02
    assert command_cost(0, 600, 0.95) == pytest.approx(1 - 0.05 ** (1 / 600))  # no clip lost still bounds above 0
    needed = clips_needed(0.01, 0.95)  # fewer clips than this cannot show any rule costs at most 1 point
    assert command_cost(0, needed, 0.95) <= 0.01 < command_cost(0, needed - 1, 0.95) and needed == 299
    assert command_cost(3, 600, None) == 0.005


def test_an_unknown_open_set_rule_names_the_key(tone_root, tmp_path):
    from kws_research.errors import ConfigError
    from kws_research.training.validation import validate

    with pytest.raises(ConfigError, match="openset.rule"):
        validate(compose("train", tiny_overrides(tone_root, tmp_path, "openset.rule=softmax")))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_the_saved_model_may_fall_anywhere_on_the_confidence_gates_step_and_nowhere_else(temperature):
    from kws_research.exporting.reference import keras_reference
    from kws_research.models.gate import ConfidenceGate, partly_gated
    from kws_research.models.temperature import Temperature

    classes = ["silence", "unknown", "yes", "no"]
    before = np.array([[0.1, 0.2, 0.4, 0.3], [0.05, 0.05, 0.8, 0.1], [0.3, 0.5, 0.1, 0.1]], np.float32)
    threshold = 0.4  # the first row's top command sits on the step; the others are far from it
    layer = ConfidenceGate(threshold, 1, [2, 3])
    shipped = np.asarray(Temperature(temperature)(layer(before)))
    assert 0.1 < shipped[0, 1] < 0.9  # Keras' own round-off put it half-way

    reference = keras_reference(object(), ("threshold", threshold), temperature, classes, shipped, lambda _: before)
    rounded_over = shipped.copy()
    rounded_over[0] = np.asarray(Temperature(temperature)(partly_gated(before[:1], 1.0, classes).astype(np.float32)))
    assert np.abs(rounded_over - shipped).max() > 0.1
    assert reference.differences(rounded_over, 1e-4).max() < 1e-5
    wrongly_gated = shipped.copy()  # the second row gated although its top command is far above the threshold
    wrongly_gated[1] = np.asarray(Temperature(temperature)(partly_gated(before[1:2], 1.0, classes).astype(np.float32)))
    assert reference.differences(wrongly_gated, 1e-4)[1] > 0.5
    prior = keras_reference(object(), ("prior", 3.0), temperature, classes, shipped, lambda _: before)
    assert prior.before_gate is None and prior.differences(rounded_over, 1e-4)[0] > 0.1  # the prior has no step
