"""Streaming evaluation: exact stream ground truth, the app's detector, calibration, and the
whole path through training, the evaluate stage, a sweep objective and export."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers.data import tiny_overrides
from helpers.models import zoo_model
from helpers.stages import TINY_STREAMS, last_json, run_stage
from helpers.sweeps import data_args, write_sweep
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from kws_research.config import compose
from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE
from kws_research.data.dataset import prepare
from kws_research.errors import KwsError
from kws_research.labels import SILENCE, UNKNOWN
from kws_research.streaming import calibration, detector, streams
from kws_research.streaming.detector import DetectorSettings, RecognizeCommands
from kws_research.streaming.matching import match
from kws_research.streaming.settings import StreamSettings

LABELS = [SILENCE, UNKNOWN, "yes", "no"]


def one_hot(label: str, p: float = 0.9) -> np.ndarray:
    scores = np.full(len(LABELS), (1 - p) / (len(LABELS) - 1))
    scores[LABELS.index(label)] = p
    return scores


def run_recognizer(sequence, settings, p: float = 0.9):
    recognizer = RecognizeCommands(LABELS, settings)
    found = [recognizer.process(t, one_hot(label, p)) for t, label in sequence]
    return [(d.time_ms, d.label) for d in found if d is not None]


def test_detector_matches_hand_computed_sequences():
    settings = DetectorSettings(threshold=0.6, window_ms=500, suppression_ms=300, min_count=2)
    sequence = [(t, "yes") for t in range(0, 400, 100)] + [(t, "no") for t in range(400, 1000, 100)]
    # yes fires at 200 ms (one result is too few at 0, and a 100 ms span < window/4 at 100);
    # at 600 ms yes and no tie (the first label wins); at 700 ms "no" has 4 of the 6 results in
    # the window: (4 * 0.9 + 2 * 0.1 / 3) / 6 = 0.611 > 0.6, 500 ms after yes.
    assert run_recognizer(sequence, settings) == [(200, "yes"), (700, "no")]
    longer = DetectorSettings(threshold=0.6, window_ms=500, suppression_ms=1000, min_count=2)
    sequence += [(t, "no") for t in range(1000, 1500, 100)]
    assert run_recognizer(sequence, longer) == [(200, "yes"), (1300, "no")]  # first result > 200 + 1000 ms
    # the same command again only after another top label (silence lifts the suppression)
    again = [(t, "yes") for t in range(0, 500, 100)] + [(t, "silence") for t in range(500, 1500, 100)]
    again += [(t, "yes") for t in range(1500, 2000, 100)]
    assert run_recognizer(again, settings) == [(200, "yes"), (1800, "yes")]
    assert run_recognizer([(t, "yes") for t in range(0, 2000, 100)], settings) == [(200, "yes")]
    # a command with its own, lower threshold fires where the one threshold holds it back
    unsure = [(t, "yes") for t in range(0, 600, 100)]
    assert run_recognizer(unsure, settings, p=0.55) == []
    own = DetectorSettings(
        threshold=0.6, window_ms=500, suppression_ms=300, min_count=2, command_thresholds=(("yes", 0.5),)
    )
    assert run_recognizer(unsure, own, p=0.55) == [(200, "yes")]
    assert list(own.thresholds(LABELS)) == [0.6, 0.6, 0.5, 0.6]
    assert DetectorSettings.from_metrics(own.as_dict(), LABELS) == own
    recognizer = RecognizeCommands(LABELS, settings)
    recognizer.process(500, one_hot("yes"))
    with pytest.raises(ValueError, match="time order"):
        recognizer.process(400, one_hot("yes"))
    with pytest.raises(ValueError, match="expected 4 scores"):
        recognizer.process(600, np.ones(3))


@pytest.mark.parametrize("seed", range(6))
def test_whole_stream_detection_equals_the_step_by_step_recognizer(seed):
    rng = np.random.default_rng(seed)
    n = 600
    labels = np.repeat(rng.integers(0, len(LABELS), n // 10), 10)  # words that last a while
    scores = rng.dirichlet(np.ones(len(LABELS)) * 0.3, n)
    scores[np.arange(n), labels] += rng.uniform(0.5, 2.0, n)
    scores /= scores.sum(axis=1, keepdims=True)
    times = np.arange(n) * 100.0
    settings = DetectorSettings(
        threshold=float(rng.uniform(0.4, 0.8)),
        window_ms=float(rng.choice([300, 500, 1000])),
        suppression_ms=float(rng.choice([200, 500, 1500])),
        min_count=int(rng.integers(1, 5)),
        # half the seeds with a threshold of each command's own
        command_thresholds=(("yes", float(rng.uniform(0.3, 0.9))), ("no", float(rng.uniform(0.3, 0.9))))
        if seed % 2
        else (),
    )
    recognizer = RecognizeCommands(LABELS, settings)
    expected = [d for d in (recognizer.process(t, s) for t, s in zip(times, scores)) if d is not None]
    found = detector.detections(times, scores, LABELS, settings)
    assert [(d.time_ms, d.label) for d in found] == [(d.time_ms, d.label) for d in expected]
    assert np.allclose([d.score for d in found], [d.score for d in expected])
    assert found, "a sequence this long should give detections"


def stream_settings(**extra) -> StreamSettings:
    base = {
        "validation": {"mixed_minutes": 1, "negatives_minutes": 1},
        "test": {"mixed_minutes": 1, "negatives_minutes": 1},
        "gap_seconds": [1.5, 3.0],
    }
    return StreamSettings.from_config({**base, **extra})


def oracle_scores(stream: streams.Stream, labels: list[str], hop_ms: float = 100.0):
    """A "model" that reads the ground truth: a word's label while the window holds all of it."""
    hop = int(hop_ms * SAMPLE_RATE / 1000)
    ends = np.arange(CLIP_SAMPLES, stream.audio.shape[0] + 1, hop) / SAMPLE_RATE
    scores = np.zeros((ends.size, len(labels)))
    scores[:, labels.index(SILENCE)] = 1.0
    for e in stream.events:
        inside = (ends - 1.0 <= e["start"]) & (e["end"] <= ends)
        scores[inside] = 0.0
        scores[inside, labels.index(e["label"])] = 1.0
    return ends * 1000.0, scores


def test_the_false_accept_certificate_is_the_exact_poisson_bound():
    from kws_research.streaming.matching import fa_upper_bound, hours_to_certify

    # one-sided 95% upper limits of a Poisson mean for 0, 1 and 3 events (Garwood; standard tables)
    for count, limit in ((0, 2.9957), (1, 4.7439), (3, 7.7537)):
        assert fa_upper_bound(count, 1.0) == pytest.approx(limit, abs=1e-4)
        assert fa_upper_bound(count, 0.5) == pytest.approx(2 * limit, abs=2e-4)
    assert fa_upper_bound(0, 2 / 60) == pytest.approx(89.87, abs=0.01)  # the default 2-minute negatives
    assert hours_to_certify(1.0) == pytest.approx(2.9957, abs=1e-4)
    assert np.isnan(fa_upper_bound(0, 0.0))


def test_the_certificate_counts_a_recording_heard_many_times_once(caplog):
    from kws_research.streaming.detector import Detection
    from kws_research.streaming.evaluation import _warn_uncertified
    from kws_research.streaming.matching import fa_upper_bound

    # 4 recordings, each played 10 times, one word every 3 s; recording 0 fires every time it plays
    events = [
        {
            "kind": "unknown",
            "label": UNKNOWN,
            "start": 3.0 * i,
            "end": 3.0 * i + 0.5,
            "snr_db": 10.0,
            "clip": ["test", i % 4, 0, 8000],
        }
        for i in range(40)
    ]
    hours = 2.0
    fired = [Detection(3000.0 * i + 400, "yes", 0.99) for i in range(0, 40, 4)]
    result = match(fired, events, hours, 1000)
    assert result["false_accepts"] == 10 and result["fa_per_hour"] == 5.0
    assert result["repeats"] == 10 and result["distinct_hours"] == pytest.approx(0.2)
    assert result["distinct_false_accepts"] == 1  # one recording fired, ten times
    assert result["fa_per_hour_upper95"] == pytest.approx(fa_upper_bound(1, 0.2))
    assert result["fa_per_hour_upper95_by_hours"] == pytest.approx(fa_upper_bound(10, hours))
    noise = [Detection(3000.0 * i + 2000, "yes", 0.99) for i in (1, 2, 3)]  # on no word: 3 of 10 repeats
    assert match(noise, events, hours, 1000)["distinct_false_accepts"] == 1
    quiet = match([], events, hours, 1000)
    assert quiet["certifiable_fa_per_hour"] == pytest.approx(fa_upper_bound(0, 0.2)) == quiet["fa_per_hour_upper95"]
    fresh = [{**e, "clip": ["test", i, 0, 8000]} for i, e in enumerate(events)]  # every word a new recording
    assert match(fired, fresh, hours, 1000)["fa_per_hour_upper95"] == pytest.approx(fa_upper_bound(10, hours))
    settings = stream_settings(target_fa_per_hour=1.0)
    _warn_uncertified(settings, {**quiet, "threshold": 0.9, "hit_rate": 0.5}, hours)
    (line,) = caplog.messages
    assert "cannot support stream.target_fa_per_hour=1" in line and "12.0 distinct minutes" in line
    assert "each 10.0 times" in line and f"{fa_upper_bound(0, 0.2):.3g} or more" in line


def _hand_scored(events: list[dict], seconds: float, hours: float, noise_at: float | None = None):
    """Oracle scores of hand-placed words (plus a "no" heard at ``noise_at`` where nobody spoke)."""
    times = np.arange(1000.0, seconds * 1000 + 1, 100.0)
    scores = np.zeros((times.size, len(LABELS)))
    scores[:, LABELS.index(SILENCE)] = 1.0
    heard = [(e["start"], e["end"], e["label"]) for e in events]
    if noise_at is not None:
        heard.append((noise_at, noise_at + 0.4, "no"))
    for start, end, label in heard:
        inside = (times / 1000 - 1.0 <= start) & (end <= times / 1000)
        scores[inside] = 0.0
        scores[inside, LABELS.index(label)] = 1.0
    return calibration.Scored(times, scores, events, hours)


def test_calibration_ships_only_a_certified_rate_and_says_how_long_negatives_must_be(caplog):
    from kws_research.streaming.evaluation import _warn_uncertified

    words = [
        {"kind": "command", "label": "yes", "start": 2.0, "end": 2.5, "snr_db": 10.0},
        {"kind": "command", "label": "no", "start": 6.0, "end": 6.5, "snr_db": 10.0},
    ]
    mixed = _hand_scored(words, 10, 10 / 3600)
    settings = stream_settings(thresholds=[0.5], window_ms=[300], suppression_ms=[500], min_count=1)
    for hours, noise, met in ((0.5, None, False), (3.5, None, True), (3.5, 5.0, False)):
        negatives = _hand_scored([], 10, hours, noise)
        _, chosen, _ = calibration.choose(mixed, negatives, LABELS, settings, 1000)
        false_accepts = 0 if noise is None else 1
        assert chosen["fa_per_hour"] == pytest.approx(false_accepts / hours)
        assert chosen["fa_per_hour_upper95"] == pytest.approx(
            calibration.match([], [], hours, 0)["fa_per_hour_upper95"] if noise is None else 4.7439 / hours, rel=1e-4
        )
        assert chosen["target_met"] is met and chosen["hit_rate"] == 1.0, (hours, noise)
        if not met:
            _warn_uncertified(settings, chosen, hours)
    short, uncertified = caplog.messages
    assert "negatives_minutes=1: 0.50 h of validation negatives cannot certify" in short and "180 minutes" in short
    assert "no detector setting certified" in uncertified and "95% bound 1.36" in uncertified


def test_the_default_grid_reaches_past_0995_where_hours_of_talk_need_it():
    """A talker's word scored 0.996 in 3.5 h of negatives: the default thresholds still find a
    certified setting that hears the commands (a grid ending at 0.995 could not)."""
    words = [{"kind": "command", "label": "yes", "start": 2.0, "end": 2.5, "snr_db": 10.0}]
    mixed = _hand_scored(words, 10, 10 / 3600)
    negatives = _hand_scored([], 10, 3.5, noise_at=5.0)
    near = negatives.scores[:, LABELS.index("no")] == 1.0
    negatives.scores[near, LABELS.index("no")] = 0.996
    negatives.scores[near, LABELS.index(SILENCE)] = 0.004
    settings = stream_settings(window_ms=[300], suppression_ms=[500], min_count=1)
    _, chosen, _ = calibration.choose(mixed, negatives, LABELS, settings, 1000)
    assert chosen["target_met"] and chosen["hit_rate"] == 1.0 and chosen["fa_per_hour"] == 0.0
    assert 0.996 < chosen["threshold"] < 1.0
    capped = stream_settings(window_ms=[300], suppression_ms=[500], min_count=1, thresholds=[0.5, 0.9, 0.995])
    assert not calibration.choose(mixed, negatives, LABELS, capped, 1000)[1]["target_met"]


def test_each_command_gets_the_lowest_threshold_the_certificate_allows():
    """Talk holds a moment scored 0.95 "no" (3.5 h, nothing else): one threshold must sit above
    it and then hears neither command, said at 0.9; a threshold per command hears "yes" and
    keeps "no" above the talk, with the same certificate, and the app's detector agrees."""
    words = [
        {"kind": "command", "label": "yes", "start": 2.0, "end": 2.5, "snr_db": 10.0},
        {"kind": "command", "label": "no", "start": 6.0, "end": 6.5, "snr_db": 10.0},
    ]
    mixed = _hand_scored(words, 10, 10 / 3600)
    negatives = _hand_scored([], 10, 3.5, noise_at=5.0)
    for scored, label, p in ((mixed, "yes", 0.9), (mixed, "no", 0.9), (negatives, "no", 0.95)):
        said = scored.scores[:, LABELS.index(label)] == 1.0
        scored.scores[said, LABELS.index(label)] = p
        scored.scores[said, LABELS.index(SILENCE)] = 1 - p
    one = stream_settings(window_ms=[300], suppression_ms=[500], min_count=1, command_thresholds=False)
    _, single, _ = calibration.choose(mixed, negatives, LABELS, one, 1000)
    assert single["target_met"] and single["threshold"] > 0.95 and single["hit_rate"] == 0.0
    assert single["command_thresholds"] == {"yes": single["threshold"], "no": single["threshold"]}
    own = stream_settings(window_ms=[300], suppression_ms=[500], min_count=1, command_thresholds=True)
    settings, chosen, _ = calibration.choose(mixed, negatives, LABELS, own, 1000)
    assert chosen["target_met"] and chosen["hit_rate"] == 0.5 and chosen["fa_per_hour"] == 0.0
    thresholds = chosen["command_thresholds"]
    assert thresholds["yes"] == min(own.thresholds) and thresholds["no"] > 0.95  # the talk resembles "no"
    assert dict(settings.command_thresholds) == thresholds and settings.threshold == chosen["threshold"]
    assert chosen["fa_per_hour_upper95"] == single["fa_per_hour_upper95"] <= own.target_fa_per_hour
    recognizer = RecognizeCommands(LABELS, settings)
    step_by_step = [recognizer.process(t, s) for t, s in zip(mixed.times_ms, mixed.scores)]
    assert [d.label for d in step_by_step if d] == ["yes"]
    assert calibration.evaluate(mixed, LABELS, settings, 1000)["hit_rate"] == 0.5
    assert own.digest() != one.digest() == stream_settings(window_ms=[300], suppression_ms=[500], min_count=1).digest()


def test_stream_ground_truth_is_exact(tone_cfg):
    data = prepare(tone_cfg)
    labels = list(data.classes)
    settings = stream_settings(snr_db=[60])
    mixed = streams.build(data, "test", "mixed", 90, settings, seed=0)
    negatives = streams.build(data, "test", "negatives", 60, settings, seed=0)
    assert {e["kind"] for e in mixed.events} == {"command", "unknown"}
    assert {e["kind"] for e in negatives.events} == {"unknown"}
    for e in mixed.events:  # the audio at each event is its clip's audible part (60 dB above the noise)
        part, row, a, b = e["clip"]
        clip = np.asarray(data.splits[part].audio[row][a:b], np.float64)
        placed = np.asarray(mixed.audio[round(e["start"] * SAMPLE_RATE) : round(e["end"] * SAMPLE_RATE)], np.float64)
        assert placed.shape == clip.shape
        assert np.abs(placed - clip).max() <= 0.01 * np.abs(clip).max() + 2
    oracle = DetectorSettings(threshold=0.7, window_ms=500, suppression_ms=500, min_count=3)
    times, scores = oracle_scores(mixed, labels)
    result = match(detector.detections(times, scores, labels, oracle), mixed.events, mixed.hours, 1000)
    assert result["commands"] > 5 and result["hit_rate"] == 1.0 and result["false_accepts"] == 0
    assert 0 < result["latency_ms"] < 1000
    times, scores = oracle_scores(negatives, labels)
    assert detector.detections(times, scores, labels, oracle) == []


def test_the_same_seed_gives_the_same_stream_and_the_cache_keeps_it(tone_cfg):
    data = prepare(tone_cfg)
    settings = stream_settings()
    first = streams.load_or_build(data, "validation", "mixed", 30, settings, seed=3)
    cached = streams.load_or_build(data, "validation", "mixed", 30, settings, seed=3)
    rebuilt = streams.build(data, "validation", "mixed", 30, settings, seed=3)
    other = streams.build(data, "validation", "mixed", 30, settings, seed=4)
    assert isinstance(cached.audio, np.memmap) and np.array_equal(first.audio, cached.audio)
    assert np.array_equal(rebuilt.audio, first.audio) and rebuilt.events == cached.events
    assert not np.array_equal(other.audio, first.audio)
    validation_clips = {tuple(e["clip"][:2]) for e in first.events}
    assert {part for part, _ in validation_clips} == {"validation"}


def test_temperature_softens_an_over_confident_model_and_lowers_its_calibration_error():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (4000, 4))
    honest = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in honest])  # calibrated by construction
    over = calibration.tempered(honest, 1 / 3)  # three times the logits
    temperature = calibration.fit_temperature(over, labels)
    assert temperature == pytest.approx(3.0, rel=0.15)
    before = calibration.reliability(over, labels)["ece"]
    after = calibration.reliability(calibration.tempered(over, temperature), labels)["ece"]
    assert after < before / 3
    import keras

    from kws_research.models.temperature import Temperature

    inputs = keras.Input((4,))
    layer = keras.Model(inputs, Temperature(temperature)(inputs))
    assert np.allclose(layer.predict(over[:64], verbose=0), calibration.tempered(over[:64], temperature), atol=1e-6)


def test_bad_stream_settings_name_the_key():
    with pytest.raises(KwsError, match=r"stream\.test\.mixed_minutes"):
        StreamSettings.from_config({"validation": {"mixed_minutes": 1, "negatives_minutes": 1}, "test": {}})
    with pytest.raises(KwsError, match=r"stream\.nope: no such key"):
        stream_settings(nope=1)
    with pytest.raises(KwsError, match=r"stream\.gap_seconds"):
        stream_settings(gap_seconds=[3, 1])


def test_streams_that_cannot_be_built_are_refused_before_training(tone_root, tmp_path):
    from kws_research.train import train

    every_word = tiny_overrides(tone_root, tmp_path, "dataset.commands=[yes,no,up,cat,dog]", "stream_eval=true")
    with pytest.raises(KwsError, match=r"^stream: the validation split has no unknown clips"):
        train(compose("train", every_word + TINY_STREAMS))
    assert not (tmp_path / "mlruns.db").exists()  # no run was started


# Tests of the module fixture run on one pytest-xdist worker (`--dist loadgroup`), which trains it once.
same_worker = pytest.mark.xdist_group("streamed_run")


@pytest.fixture(scope="module")
def streamed_run(tone_root, tmp_path_factory):
    """A small TC-ResNet trained with the streaming evaluation inside its run."""
    from kws_research.train import train

    folder = tmp_path_factory.mktemp("streaming")
    overrides = tiny_overrides(tone_root, folder, "model=tc_resnet", "trainer.epochs=4", "stream_eval=true")
    result = train(compose("train", overrides + TINY_STREAMS))
    return folder, result


@same_worker
def test_a_training_run_logs_its_streaming_evaluation(streamed_run):
    folder, result = streamed_run
    m = result.metrics
    for key in ("stream_hit_rate", "stream_fa_per_hour", "stream_miss_rate_at_1fah", "detector_threshold", "ece_after"):
        assert key in m and np.isfinite(m[key]), key
    assert 0 <= m["stream_hit_rate"] <= 1 and m["temperature"] > 0
    assert m["detector_window_ms"] in (250, 500, 750, 1000) and m["detector_hop_ms"] == 100
    assert m["val_stream_fa_per_hour"] <= m["stream_target_fa_per_hour"] or m["stream_target_met"] == 0
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    names = {a.path for a in client.list_artifacts(result.run_id, "streaming")}
    assert {f"streaming/{n}" for n in ("streaming.json", "streaming_det.png", "calibration.png")} <= names
    assert client.get_run(result.run_id).data.metrics["stream_fa_per_hour"] == m["stream_fa_per_hour"]
    with tempfile.TemporaryDirectory() as tmp:
        report = json.loads(Path(client.download_artifacts(result.run_id, "streaming/streaming.json", tmp)).read_text())
    on_validation = {p["threshold"]: p for p in report["val_det_curve"]}
    assert len(on_validation) == len(report["det_curve"]) > 100  # the default grid, on both splits
    own = {k: v for k, v in m.items() if k.startswith("detector_threshold_")}
    assert own and all(v <= m["detector_threshold"] for v in own.values())  # lowered from the one, never raised
    assert m["stream_target_met"] == 0 and set(own.values()) == {m["detector_threshold"]}  # uncertified: none lowered
    shipped = on_validation[m["detector_threshold"]]  # the calibrated setting lies on the validation DET
    assert shipped["hit_rate"] == pytest.approx(m["val_stream_hit_rate"])
    assert shipped["fa_per_hour"] == pytest.approx(m["val_stream_fa_per_hour"])
    for stream in report["streams"].values():  # the tiny root has a few clips, each heard many times
        assert 0 < stream["distinct_clips"] < stream["words"]


@same_worker
def test_coreml_and_keras_give_the_same_detections_on_a_stream(streamed_run, tmp_path):
    import json

    from kws_research.coreml import runtime
    from kws_research.coreml.convert import convert
    from kws_research.coreml.verify import Verification
    from kws_research.exporting.streaming import mismatches
    from kws_research.models import load_model
    from kws_research.streaming.scoring import keras_predict, score

    folder, result = streamed_run
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    local = client.download_artifacts(result.run_id, "", str(tmp_path))
    model = load_model(f"{local}/model/model.keras")
    labels = json.loads(open(f"{local}/labels.json").read())
    config = OmegaConf.load(f"{local}/config.yaml")
    path = tmp_path / "m.mlpackage"
    convert(model, labels, "mlprogram", "fp16").save(str(path))
    data = prepare(OmegaConf.to_container(config.dataset))
    stream = streams.build(data, "test", "mixed", 20, stream_settings(snr_db=[30]), seed=0)
    low = DetectorSettings(threshold=0.2, window_ms=300, suppression_ms=300, min_count=1)
    compiled = runtime.load(path)
    found = {}
    for name, predict in (("keras", keras_predict(model)), ("coreml", lambda x: runtime.predict(compiled, x))):
        times, scores, _ = score(predict, stream.audio, 100, 64)
        found[name] = detector.detections(times, scores, labels, low)
    assert found["keras"], "the low threshold should give detections to compare"
    assert mismatches(found["keras"], found["coreml"], 100) == 0
    other = zoo_model("tc_resnet", len(labels))  # another model's detections do not pass for this file's
    times, scores, _ = score(keras_predict(other), stream.audio, 100, 64)
    check = Verification(str(path), "mlprogram", "fp16", 1, 0.0, 0.0, 1.0, 1.0, 1.0, 5e-3, True, 0.0)
    check.stream_seconds, check.stream_keras_detections = 20.0, len(found["keras"])
    check.stream_mismatches = mismatches(found["coreml"], detector.detections(times, scores, labels, low), 100)
    assert check.stream_mismatches > 0
    assert "detections differ on 20 s of test stream" in check.failure()


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
@same_worker
def test_evaluate_stage_and_export_ship_the_calibrated_detector(streamed_run, tmp_path):
    import coremltools as ct

    from kws_research.exporting.stage import export_run

    folder, result = streamed_run
    tracking = [f"tracking.uri=sqlite:///{folder}/mlruns.db", f"tracking.artifact_location={folder}/mlartifacts"]
    evaluated = run_stage("evaluate", f"run_id={result.run_id}", *tracking, *TINY_STREAMS, "stream.seed=1", cwd=folder)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    line = last_json(evaluated.stdout)
    assert line["run_id"] == result.run_id and "false accepts per hour" in evaluated.stdout
    bad = run_stage("evaluate", f"run_id={result.run_id}", *tracking, "stream.nope=1", cwd=folder)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: stream.nope")

    cfg = OmegaConf.to_container(
        compose(
            "export",
            [
                f"run_id={result.run_id}",
                *tracking,
                *TINY_STREAMS,
                "stream.seed=1",
                f"output_dir={tmp_path}/out",
                "baseline_overrides=['trainer.epochs=1','trainer.verbose=0']",
            ],
        ),
        resolve=True,
    )
    exported = export_run(cfg)
    assert exported["coreml_verified"] is True
    assert all(c["stream_mismatches"] == 0 and c["stream_seconds"] == 10 for c in exported["checks"])
    assert "stream: false accepts per hour (no commands)" in exported["comparison"]
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    run = client.get_run(result.run_id).data
    assert run.metrics["detector_threshold"] == line["detector_threshold"]  # seed 1: evaluated once, reused
    meta = ct.models.MLModel(
        str(tmp_path / "out" / "kws-tc_resnet.mlpackage"), skip_model_load=True
    ).user_defined_metadata
    for key in (
        "detector_threshold",
        "detector_window_ms",
        "detector_hop_ms",
        "detector_suppression_ms",
        "temperature",
    ):
        assert float(meta[key]) == pytest.approx(run.metrics[key]), key
    baseline = client.get_run(exported["baseline_run_id"]).data
    assert "stream_hit_rate" in baseline.metrics and baseline.tags["stream_settings"].endswith("/none")

    # the streaming model of each format: verified hop by hop, described for the app, its cost logged
    for check in exported["checks"]:
        assert check["streaming_hops"] > 0 and check["streaming_mismatches"] == 0, check
        assert check["streaming_max_abs_diff"] <= check["tolerance"], check
    streaming = ct.models.MLModel(str(tmp_path / "out" / "kws-tc_resnet-streaming.mlmodel"), skip_model_load=True)
    meta = streaming.user_defined_metadata
    assert [i.name for i in streaming.get_spec().description.input] == ["audio_hop", "stream_state"]
    assert {o.name for o in streaming.get_spec().description.output} == {"probabilities", "next_stream_state"}
    assert (meta["hop_samples"], meta["warmup_calls"], meta["interface"]) == ("1600", "9", "streaming")
    assert float(meta["detector_threshold"]) == pytest.approx(run.metrics["detector_threshold"])
    assert 0 < run.metrics["macs_per_hop"] <= 0.2 * run.metrics["macs"]
    assert "MACs per hop (streaming model)" in exported["comparison"]


@pytest.mark.slow  # export end to end; make test runs it, make test-fast does not
@same_worker
def test_export_ships_the_detector_the_run_was_certified_with(streamed_run, tmp_path, capsys):
    """The run was evaluated on tiny streams; export's own `stream` config (default: minutes
    of streams) would evaluate it again and ship another detector. By default it ships the
    run's: same threshold, window and bound in the metadata as the run logged, no new evaluation."""
    import coremltools as ct

    from kws_research.exporting.stage import export_run
    from kws_research.streaming.evaluation import DIGEST_TAG

    folder, result = streamed_run
    tracking = [f"tracking.uri=sqlite:///{folder}/mlruns.db", f"tracking.artifact_location={folder}/mlartifacts"]
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    before = client.get_run(result.run_id).data
    cfg = compose(
        "export",
        [f"run_id={result.run_id}", *tracking, f"output_dir={tmp_path}/out", "baseline=skip", "format=neuralnetwork"],
    )
    assert StreamSettings.from_config(cfg.stream).digest() not in before.tags[DIGEST_TAG]  # export's own differs
    exported = export_run(OmegaConf.to_container(cfg, resolve=True))
    assert exported["coreml_verified"] is True
    printed = capsys.readouterr().out
    assert "streaming evaluation of run" not in printed.replace("shipping the streaming evaluation", "")
    assert (
        f"shipping the streaming evaluation of run {result.run_id}" in printed
        and "h of validation negatives" in printed
    )
    after = client.get_run(result.run_id).data
    assert after.tags[DIGEST_TAG] == before.tags[DIGEST_TAG]
    meta = ct.models.MLModel(
        str(tmp_path / "out" / "kws-tc_resnet.mlmodel"), skip_model_load=True
    ).user_defined_metadata
    own = [k for k in before.metrics if k.startswith("detector_threshold_")]  # each command's threshold
    assert own
    for key in ("detector_threshold", "detector_window_ms", "val_stream_fa_per_hour_upper95", "temperature", *own):
        assert float(meta[key]) == pytest.approx(before.metrics[key]), key
    assert meta["stream_settings"] == before.tags[DIGEST_TAG].split("/")[0]
    assert float(meta["val_stream_negatives_hours"]) == pytest.approx(0.5 / 60, abs=1e-3)
    # the independent material behind the bound: the tiny root's few recordings, each heard many times
    assert float(meta["val_stream_distinct_hours"]) == pytest.approx(
        before.metrics["val_stream_distinct_hours"], abs=1e-4
    )
    assert 0 < float(meta["val_stream_distinct_hours"]) < float(meta["val_stream_negatives_hours"])
    assert "distinct minutes)" in printed


def test_stream_options_on_the_export_command_line_mean_evaluating_here():
    from kws_research.exporting.options import evaluation_of

    assert evaluation_of(["run_id=x", "format=both"], "run") == "run"
    assert evaluation_of(["stream=long"], "run") == evaluation_of(["stream.seed=1"], "run") == "here"
    assert evaluation_of(["stream=long", "evaluation=run"], "run") == "run"
    assert evaluation_of(["streaming=off", "streaming_model=false"], "run") == "run"


@same_worker
def test_feature_stream_scoring_equals_window_by_window(streamed_run, tmp_path):
    """Each frame computed once gives every window's probabilities and the same detections."""
    from kws_research.models import load_model
    from kws_research.models.temperature import tempered_model
    from kws_research.streaming.scoring import FeatureScorer, WindowScorer, keras_predict, keras_scorer, score

    folder, result = streamed_run
    local = MlflowClient(f"sqlite:///{folder}/mlruns.db").download_artifacts(result.run_id, "", str(tmp_path))
    model = tempered_model(load_model(f"{local}/model/model.keras"), 1.5)  # the graph export ships
    labels = json.loads(open(f"{local}/labels.json").read())
    data = prepare(OmegaConf.to_container(OmegaConf.load(f"{local}/config.yaml").dataset))
    stream = streams.build(data, "test", "mixed", 30, stream_settings(snr_db=[20]), seed=3)
    scorer = keras_scorer(model)
    assert isinstance(scorer, FeatureScorer)
    low = DetectorSettings(threshold=0.3, window_ms=300, suppression_ms=300, min_count=1)
    for hop_ms in (100, 50, 105):  # 105 ms is no whole number of 10 ms frame hops: windows then
        times, fast, _ = scorer.stream(stream.audio, hop_ms, 64)
        ref_times, reference, _ = score(keras_predict(model), stream.audio, hop_ms, 64)
        np.testing.assert_array_equal(times, ref_times)
        assert fast.shape == reference.shape and len(fast) > 100
        assert np.abs(fast - reference).max() <= 1e-4, hop_ms
        found = [(d.label, d.time_ms) for d in detector.detections(times, fast, labels, low)]
        assert found and found == [(d.label, d.time_ms) for d in detector.detections(times, reference, labels, low)]
    baseline = zoo_model("seed_cnn1d", len(labels))  # no front end: window by window
    assert isinstance(keras_scorer(baseline), WindowScorer)


@same_worker
def test_the_streaming_model_fed_hop_by_hop_gives_the_window_models_probabilities(streamed_run, tmp_path):
    """The Keras streaming form and its Core ML files (both formats, fp16 and int8 weights)
    on the reference runtime: after the warm-up, call k gives the window ending at hop k."""
    from kws_research.contract import to_float
    from kws_research.coreml import runtime
    from kws_research.coreml.convert import convert_streaming
    from kws_research.models import complexity, load_model
    from kws_research.models.streaming import macs_per_hop, streaming_model
    from kws_research.streaming.scoring import keras_scorer

    folder, result = streamed_run
    local = MlflowClient(f"sqlite:///{folder}/mlruns.db").download_artifacts(result.run_id, "", str(tmp_path))
    model = load_model(f"{local}/model/model.keras")
    labels = json.loads(open(f"{local}/labels.json").read())
    data = prepare(OmegaConf.to_container(OmegaConf.load(f"{local}/config.yaml").dataset))
    stream = streams.build(data, "test", "mixed", 6, stream_settings(snr_db=[20]), seed=4)
    _, reference, _ = keras_scorer(model).stream(stream.audio, 100, 64)
    form = streaming_model(model, 1600)
    state = np.zeros((1, int(form.inputs[1].shape[1])), np.float32)
    calls = []
    for start in range(0, len(stream.audio) - 1599, 1600):
        probabilities, state = form.predict_on_batch([to_float(stream.audio[None, start : start + 1600]), state])
        calls.append(probabilities[0])
    assert np.abs(np.asarray(calls)[9 : 9 + len(reference)] - reference).max() <= 1e-4
    assert np.abs(np.asarray(calls)[8] - reference[0]).max() > 1e-3  # the call before covers 0.1 s of zeros
    assert macs_per_hop(model, 1600) <= 0.2 * complexity(model)["macs"]

    for fmt, precision, quantize, tolerance in (
        ("mlprogram", "fp16", None, 5e-3),
        ("neuralnetwork", "fp32", None, 1e-4),
        ("mlprogram", "fp16", "int8", 1e-1),
    ):
        path = tmp_path / f"streaming-{fmt}-{quantize}{'.mlpackage' if fmt == 'mlprogram' else '.mlmodel'}"
        convert_streaming(form, labels, fmt, precision, quantize).save(str(path))
        probabilities = runtime.run_stream(runtime.load(path), to_float(stream.audio))[9 : 9 + len(reference)]
        assert probabilities.shape == reference.shape
        assert np.abs(probabilities - reference).max() <= tolerance, (fmt, quantize)


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_a_sweep_can_minimise_a_streaming_metric(tone_root, tmp_path):
    from kws_research.sweeping.coordinator import run_sweep
    from kws_research.sweeping.definition import load

    overrides = [
        "dataset=speech_commands",
        "dataset.commands=[yes,no,up]",
        "dataset.unknown_percentage=50",
        "dataset.silence_percentage=50",
        "trainer.epochs=1",
        "trainer.batch_size=16",
        "trainer.verbose=0",
        "augment=none",
        "model=tc_resnet",
        "stream_eval=true",
        *TINY_STREAMS,
    ]
    sweep = write_sweep(
        tmp_path,
        n_trials=1,
        metrics=["stream_miss_rate_at_1fah"],
        directions=["minimize"],
        overrides=overrides,
        constraints={"max_params": 100000, "max_stream_fa_per_hour": 1e6},
        params={"optimizer.learning_rate": "choice(0.003)"},
        pruner={"name": "none"},
        export={"enabled": False},
    )
    result = run_sweep(load([f"sweep={sweep}", *data_args(tone_root, tmp_path)]))
    assert result["n_complete"] == 1 and result["best_values"]["stream_miss_rate_at_1fah"] <= 1.0, result
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.role = 'trial'")
    assert [r.data.metrics["stream_miss_rate_at_1fah"] for r in runs] == [result["best_value"]]
    without = write_sweep(tmp_path, metrics=["stream_fa_per_hour"], directions=["minimize"])
    with pytest.raises(KwsError, match="streaming metrics need stream_eval=true"):
        run_sweep(load([f"sweep={without}", *data_args(tone_root, tmp_path)]))
