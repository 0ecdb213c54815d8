"""Negatives at scale: long recordings, continuous synthetic speech (source and stream
background) and hard-negative mining, each as an unknown source of a real prepare."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers.data import tiny_overrides, tone_dataset_cfg, word_clip
from helpers.stages import TINY_STREAMS, last_json, run_stage
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from kws_research.config import compose
from kws_research.contract import CLIP_SAMPLES, INT16_SCALE, SAMPLE_RATE
from kws_research.data.audio import decode_long
from kws_research.data.dataset import prepare, task_spec
from kws_research.data.layout import which_set
from kws_research.data.long_audio import WindowSettings, window_offsets
from kws_research.data.sources.speech import speech_root
from kws_research.data.speech import split_recordings
from kws_research.data.unknown import HOMOPHONES
from kws_research.errors import ConfigError, KwsError
from kws_research.streaming import streams
from kws_research.streaming.runs import mine_run, stream_backgrounds
from kws_research.streaming.settings import StreamSettings

SPEECH = {"speakers": 4, "sentences": 2, "max_words": 6}
same_worker = pytest.mark.xdist_group("mined_run")  # the mined run is trained once


def long_recording(seconds: float, rate: int, seed: int, channels: int = 1) -> np.ndarray:
    """Tone bursts with silent stretches: some windows loud, some near-silent."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    loud = (np.floor(t / 1.5) % 2 == 0).astype(np.float32)  # 1.5 s on, 1.5 s off
    signal = 0.2 * np.sin(2 * np.pi * rng.uniform(200, 900) * t) * loud + rng.normal(0, 1e-4, n)
    return np.repeat(signal[:, None], channels, axis=1) if channels > 1 else signal


@pytest.fixture
def long_folder(tmp_path):
    folder = tmp_path / "podcasts"
    (folder / "show").mkdir(parents=True)
    for i in range(6):
        rate, fmt = ((44100, "FLAC"), (8000, "WAV"), (22050, "FLAC"))[i % 3]
        suffix = ".flac" if fmt == "FLAC" else ".wav"
        sf.write(folder / "show" / f"episode{i}{suffix}", long_recording(12, rate, i, channels=1 + i % 2), rate)
    (folder / "show" / "broken.flac").write_bytes(b"fLaC not really")
    return folder


def windows_cfg(tone_root, cache, **extra):
    return tone_dataset_cfg(tone_root, cache, unknown_percentage=100.0, **extra)


def window_rows(data, split):
    return [(i, s) for i, s in enumerate(data.splits[split].sources) if s.startswith("window:")]


def test_long_recordings_become_loud_one_second_windows_split_by_file(tone_root, tmp_path, long_folder):
    cfg = windows_cfg(tone_root, tmp_path / "c", unknown_sources={"words": 1.0, "long_folder": 1.0})
    cfg["long_folder"] = str(long_folder)
    cfg["unknown_sources_in_eval"] = True
    data = prepare(cfg)
    summary = data.summary
    assert summary["n_skipped"] == 1 and summary["skipped"][0]["file"].endswith("broken.flac")
    seen = 0
    for split in ("train", "validation", "test"):
        rows = window_rows(data, split)
        assert summary["unknown_sources"][split].get("long_folder", 0) == len(rows)
        for index, source in rows:
            path, offset = source.split(":", 1)[1].rsplit("@", 1)
            rel = path.split("podcasts/", 1)[1]
            assert which_set(rel, 10.0, 10.0) == split  # every window of a file in the file's split
            clip = np.asarray(data.splits[split].audio[index])
            assert np.array_equal(clip, decode_long(path)[int(offset) : int(offset) + CLIP_SAMPLES])
            rms = np.sqrt(np.mean((clip.astype(np.float64) / INT16_SCALE) ** 2))
            assert 20 * np.log10(rms) >= -45  # near-silent windows are skipped
            seen += 1
    assert seen > 0 and summary["unknown_sources"]["train"]["long_folder"] > 0
    again = prepare(dict(cfg, cache_dir=str(tmp_path / "d")))
    assert again.fingerprint == data.fingerprint and again.splits["train"].sources == data.splits["train"].sources
    settings = StreamSettings.from_config(compose("train", ["stream.background=long_folder"]).stream)
    tracks = stream_backgrounds(cfg, settings)  # the folder's own test files play under the test negatives
    test_files = sorted(
        p for p in (long_folder / "show").glob("episode*") if which_set(f"show/{p.name}", 10.0, 10.0) == "test"
    )
    assert tracks["test"].size == sum(decode_long(p).size for p in test_files)
    with pytest.raises(KwsError, match="stream.background: long_folder needs dataset.long_folder"):
        stream_backgrounds(dict(cfg, long_folder=None, unknown_sources={"words": 1.0}), settings)
    with pytest.raises(KwsError, match="dataset.long_folder: .* is not a folder"):
        prepare(dict(cfg, long_folder=str(tmp_path / "nowhere")))
    with pytest.raises(KwsError, match="dataset.long_folder: the long_folder source needs"):
        prepare(dict(cfg, long_folder=None))
    with pytest.raises(KwsError, match="no window of the training recordings is louder than .*min_dbfs=-1"):
        prepare(dict(cfg, long_windows={"min_dbfs": -1}, cache_dir=str(tmp_path / "e")))
    with pytest.raises(KwsError, match="dataset.long_windows.min_dbfs: 3.0 must be below 0 dBFS"):
        prepare(dict(cfg, long_windows={"min_dbfs": 3}))
    with pytest.raises(KwsError, match="dataset.long_windows.hop: no such key"):
        prepare(dict(cfg, long_windows={"hop": 1}))


def test_window_offsets_skip_near_silence_at_the_hop():
    audio = np.zeros(5 * SAMPLE_RATE, np.int16)
    audio[2 * SAMPLE_RATE : 3 * SAMPLE_RATE] = 3000
    assert window_offsets(audio, WindowSettings()) == [2 * SAMPLE_RATE]
    half = window_offsets(audio, WindowSettings(hop_seconds=0.5, min_dbfs=-30))
    assert half == [int(1.5 * SAMPLE_RATE), 2 * SAMPLE_RATE, int(2.5 * SAMPLE_RATE)]


VOCABULARY = "yes no know noh up dog apple river paper sugar table green seven house city bread\n"


def speech_cfg(tone_root, cache, **sources):
    """Tone commands yes/no/up, dog held out; the vocabulary file lists them and a homophone too."""
    words = cache.parent / "vocabulary.txt"
    words.write_text(VOCABULARY.replace(" ", "\n"))
    cfg = windows_cfg(tone_root, cache, unknown_sources=sources or {"words": 1.0, "speech": 1.0})
    cfg.update(heldout_unknown_words=["dog"], synthetic_speech={**SPEECH, "vocabulary": str(words)})
    return cfg


def test_continuous_speech_never_says_a_command_and_keeps_speakers_in_their_split(tone_root, tmp_path):
    cfg = speech_cfg(tone_root, tmp_path / "c")
    data = prepare(cfg)
    root = speech_root(task_spec(cfg), tmp_path / "c")
    spoken = json.loads((root / "sentences.json").read_text())
    banned = {"yes", "no", "up", "dog", *HOMOPHONES["no"]}
    words = {w for speaker in spoken.values() for s in speaker["sentences"] for w in s.split()}
    assert words and not words & banned and words <= set(VOCABULARY.split())
    by_split = {split: {p.stem.split("_")[0] for p in files} for split, files in split_recordings(root).items()}
    assert all(by_split.values()) and sum(map(len, by_split.values())) == len(set().union(*by_split.values())) == 4
    train_sentences = {s for v in spoken.values() if v["split"] == "train" for s in v["sentences"]}
    held = {s for v in spoken.values() if v["split"] != "train" for s in v["sentences"]}
    assert not train_sentences & held
    rows = window_rows(data, "train")
    assert rows and data.summary["unknown_sources"]["train"]["speech"] == len(rows)
    assert all("/train/" in s for _, s in rows)  # training windows from training speakers only
    assert "speech" not in data.summary["unknown_sources"]["validation"]  # evaluation keeps the words
    again = prepare(dict(cfg, cache_dir=str(tmp_path / "d")))  # generated again elsewhere: identical
    assert again.fingerprint == data.fingerprint
    assert np.array_equal(np.asarray(again.splits["train"].audio), np.asarray(data.splits["train"].audio))


def test_speech_plays_under_the_negatives_streams_of_its_own_split(tone_root, tmp_path):
    cfg = speech_cfg(tone_root, tmp_path / "c", words=1.0)
    data = prepare(cfg)
    quiet = StreamSettings.from_config(compose("train", TINY_STREAMS).stream)
    talking = StreamSettings.from_config(compose("train", [*TINY_STREAMS, "stream.background=speech"]).stream)
    tracks = stream_backgrounds(cfg, talking)
    files = split_recordings(speech_root(task_spec(cfg), tmp_path / "c"))
    assert np.array_equal(tracks["validation"], np.concatenate([decode_long(p) for p in files["validation"]]))
    assert stream_backgrounds(cfg, quiet) is None
    plain = streams.build(data, "validation", "negatives", 30, quiet, 0)
    busy = streams.build(data, "validation", "negatives", 30, talking, 0, tracks["validation"])
    assert plain.events == busy.events  # the same words, now with people talking under them
    talk = busy.audio.astype(np.float64) - plain.audio.astype(np.float64)
    assert np.abs(talk).max() > 100
    word_power = np.mean(
        [
            np.mean(np.asarray(data.splits["validation"].audio[row][a:b], np.float64) ** 2)
            for _, row, a, b in (e["clip"] for e in busy.events)
        ]
    )
    snr = 10 * np.log10(word_power / np.mean(talk**2))
    assert abs(snr - talking.background_snr_db) < 1.0
    key = streams.digest(data, "validation", "negatives", 30, talking, 0, tracks["validation"])
    assert key != streams.digest(data, "validation", "negatives", 30, talking, 0, tracks["test"])
    mixed = streams.build(data, "validation", "mixed", 30, talking, 0, tracks["validation"])
    assert np.array_equal(mixed.audio, streams.build(data, "validation", "mixed", 30, quiet, 0).audio)
    with pytest.raises(KwsError, match="stream.background"):
        StreamSettings.from_config(compose("train", ["stream.background=radio"]).stream)


def test_a_missing_speech_engine_names_the_extra_to_install(tone_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # as if the synth extra were not installed
    with pytest.raises(KwsError, match=r"pip install -e '\.\[synth\]'"):
        prepare(speech_cfg(tone_root, tmp_path / "c"))


def command_like_recordings(folder):
    """Long 'negative' recordings in which the tone of the command word yes keeps coming
    back: a detector trained on the tones fires there, as it would on a user's audio."""
    folder.mkdir(parents=True)
    for i in range(8):
        parts = [word_clip(0 if k % 2 == 0 else 4, 40 + i, k) for k in range(8)]
        sf.write(folder / f"meeting{i}.wav", np.concatenate(parts), SAMPLE_RATE, subtype="PCM_16")
    return folder


@pytest.fixture(scope="module")
def mined_run(tone_root, tmp_path_factory):
    from kws_research.train import train

    folder = tmp_path_factory.mktemp("mining")
    overrides = tiny_overrides(tone_root, folder, "model=tc_resnet", "trainer.epochs=4", "stream_eval=true")
    result = train(compose("train", overrides + TINY_STREAMS))
    tracking = [o for o in overrides if o.startswith("tracking.")]
    meetings = command_like_recordings(folder / "meetings")
    mined = run_stage("mine", f"run_id={result.run_id}", *tracking, *TINY_STREAMS, f"folder={meetings}", cwd=folder)
    assert mined.returncode == 0, mined.stderr[-2000:]
    stream_cfg = compose("mine", [*tracking, *TINY_STREAMS, "minutes=0.5", f"output={folder}/s"])
    client = MlflowClient(stream_cfg.tracking.uri)
    streamed = mine_run(client, result.run_id, OmegaConf.to_container(stream_cfg, resolve=True))  # the Python API
    return folder, overrides, result, last_json(mined.stdout), streamed, meetings


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
@same_worker
def test_mining_saves_the_windows_the_detector_fires_on_where_no_command_is_said(mined_run):
    folder, overrides, result, mined, streamed, meetings = mined_run
    out = folder / "cache" / "hard_negatives" / result.run_id
    assert mined["folder"] == str(out)
    record = json.loads((out / "mined.json").read_text())
    assert record["mined_from"] == f"folder {meetings} (training-split files)"
    assert len(record["detections"]) == mined["mined_windows"] > 0
    assert mined["mining_fa_per_hour"] == pytest.approx(len(record["detections"]) / record["hours"])
    train_files = sorted(p for p in meetings.glob("*.wav") if which_set(p.name, 10.0, 10.0) == "train")
    audio = np.concatenate([decode_long(p) for p in train_files])
    assert record["hours"] == pytest.approx(audio.size / SAMPLE_RATE / 3600)  # validation/test files never mined
    for d in record["detections"]:
        end = int(round(d["time_ms"] * SAMPLE_RATE / 1000))
        clip, rate = sf.read(out / d["file"], dtype="int16")
        assert rate == SAMPLE_RATE and np.array_equal(clip, audio[end - CLIP_SAMPLES : end])
        assert d["label"] in ("yes", "no", "up") and d["score"] > record["detector"]["detector_threshold"]
    client = MlflowClient(compose("train", overrides).tracking.uri)
    logged = {a.path for a in client.list_artifacts(result.run_id, "hard_negatives")}
    assert f"hard_negatives/{record['detections'][0]['file']}" in logged
    assert client.get_run(result.run_id).data.metrics["mining_fa_per_hour"] == pytest.approx(
        streamed["mining_fa_per_hour"]  # the later mining (the stream) is the run's latest value
    )
    from_stream = json.loads((folder / "s" / "mined.json").read_text())
    assert from_stream["mined_from"] == "0.5 min negatives-only stream of the training split"
    assert len(from_stream["detections"]) == streamed["mined_windows"]


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
@same_worker
def test_mined_windows_are_an_unknown_source_of_the_next_run_for_training_only(mined_run):
    folder, overrides, result, mined, streamed, _ = mined_run
    cfg = compose(
        "train",
        overrides + ["dataset.unknown_sources.hard_negatives=1.0", f"dataset.hard_negatives={result.run_id}"],
    )
    data = prepare(cfg.dataset)
    rows = [s for s in data.splits["train"].sources if "/hard_negatives/" in s]
    counts = data.summary["unknown_sources"]
    assert rows and counts["train"]["hard_negatives"] == len(rows) <= mined["mined_windows"]
    assert all("hard_negatives" not in counts[s] for s in ("validation", "test"))
    rounds = prepare(dict(cfg.dataset, hard_negatives=[result.run_id, str(folder / "s")]))  # a mining loop's rounds
    mined_too = rounds.summary["unknown_sources"]["train"]["hard_negatives"]
    assert mined_too == min(counts["train"]["words"], mined["mined_windows"] + streamed["mined_windows"])
    assert (rounds.fingerprint != data.fingerprint) == (streamed["mined_windows"] > 0)  # a round that found nothing
    with pytest.raises(KwsError, match="python -m kws_research.mine run_id=nope"):
        prepare(dict(cfg.dataset, hard_negatives="nope"))
    half = folder / "cache" / "hard_negatives" / "half-mined"  # what a mining killed mid-swap used to leave
    shutil.copytree(folder / "cache" / "hard_negatives" / result.run_id, half)
    (half / "mined.json").unlink()
    with pytest.raises(KwsError, match=r"half-mined has no mined.json: a mining of run half-mined did not finish"):
        prepare(dict(cfg.dataset, hard_negatives="half-mined"))
    mine_cfg = OmegaConf.to_container(compose("mine", [*TINY_STREAMS, f"folder={folder}/nonexistent"]), resolve=True)
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    with pytest.raises(KwsError, match=r"^folder: .*nonexistent is not a folder"):
        mine_run(client, result.run_id, mine_cfg)  # refused before any evaluation or mining


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_the_openset_experiment_trains_on_talk_in_rooms_and_is_measured_with_people_talking(tone_root, tmp_path):
    from kws_research.models.gate import calibrated_rule
    from kws_research.train import train

    speech = [f"dataset.synthetic_speech.{k}={v}" for k, v in SPEECH.items()]
    windows = ["stream_windows.minutes=1"]
    cfg = compose(
        "train",
        tiny_overrides(
            tone_root, tmp_path, "+experiment=openset", "trainer.epochs=3", *speech, *windows, *TINY_STREAMS
        ),
    )
    assert cfg.stream.background == "conversation" and cfg.stream_eval and cfg.openset.rule == "prior"
    assert cfg.stream_windows.share == 0.3 and cfg.stream_windows.mining_rounds == 0
    assert list(cfg.dataset.synthetic_speech.engines) == ["espeak", "piper"] and cfg.augment.reverb == 0.3
    result = train(cfg)
    assert calibrated_rule(result.metrics)[0] == "prior"
    assert np.isfinite(result.metrics["stream_fa_per_hour"]) and 0 <= result.metrics["stream_hit_rate"] <= 1
    run = MlflowClient(cfg.tracking.uri).get_run(result.run_id)
    assert run.data.params["dataset.unknown_sources.conversation"] == "0.25"
    assert run.data.params["stream.background"] == "conversation" and run.data.params["stream.reverb"] == "0.5"
    clips = len(prepare(OmegaConf.to_container(cfg.dataset, resolve=True)).splits["train"])
    assert run.data.metrics["stream_windows_per_epoch"] == round(clips * 0.3 / 0.7)  # 30% of each epoch


def test_names_that_are_not_utf8_are_skipped_and_listed_in_every_outside_folder(tone_root, tmp_path, long_folder):
    """A non-UTF-8 file name under dataset.long_folder or dataset.unknown_folder was a
    traceback; it is skipped and listed, as in word folders."""
    import os

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(6):
        sf.write(clips / f"s{i}_word.wav", long_recording(1, SAMPLE_RATE, i), SAMPLE_RATE, subtype="PCM_16")
    for folder, source in ((long_folder / "show", "episode0.flac"), (clips, "s0_word.wav")):
        with open(os.fsencode(folder) + b"/zz_\xff\xfe" + source[source.rindex(".") :].encode(), "wb") as handle:
            handle.write((folder / source).read_bytes())
    cfg = windows_cfg(tone_root, tmp_path / "c", unknown_sources={"words": 1.0, "long_folder": 0.5, "folder": 0.5})
    cfg["long_folder"], cfg["unknown_folder"] = str(long_folder), str(clips)
    skipped = {row["file"]: row["reason"] for row in prepare(cfg).summary["skipped"]}
    assert "UTF-8" in skipped["long_folder/show/zz_\\xff\\xfe.flac"], skipped
    assert "UTF-8" in skipped["folder/zz_\\xff\\xfe.wav"], skipped


def test_long_recordings_are_split_by_the_speaker_their_names_give(tone_root, tmp_path):
    """A LibriSpeech-like folder (`<speaker>-<chapter>-<utterance>.flac`): with
    dataset.long_speaker every speaker's files go to one split, as clips do."""
    from kws_research.data import long_audio

    folder = tmp_path / "talk"
    folder.mkdir()
    for speaker in range(12):
        for chapter in range(3):
            path = folder / f"{100 + speaker}-{chapter}-0000.flac"
            sf.write(path, long_recording(3, SAMPLE_RATE, speaker * 3 + chapter), SAMPLE_RATE)

    def splits_of_speakers(pattern) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        files = long_audio.recordings(folder, "k", 30.0, 30.0, None, long_audio.speaker_pattern(pattern))
        for split, paths in files.items():
            for path in paths:
                found.setdefault(path.name.split("-")[0], set()).add(split)
        return found

    assert any(len(s) > 1 for s in splits_of_speakers(None).values())  # by file, a voice is heard in two splits
    by_speaker = splits_of_speakers(r"^(\d+)-")
    assert len(by_speaker) == 12 and all(len(s) == 1 for s in by_speaker.values()), by_speaker
    assert {next(iter(s)) for s in by_speaker.values()} == {"train", "validation", "test"}
    cfg = windows_cfg(tone_root, tmp_path / "c", unknown_sources={"words": 1.0, "long_folder": 1.0})
    cfg.update(long_folder=str(folder), long_speaker=r"^(\d+)-", unknown_sources_in_eval=True)
    cfg.update(validation_percentage=30.0, testing_percentage=30.0)
    for split in ("train", "validation", "test"):  # the data set uses the same split
        for _, source in window_rows(prepare(cfg), split):
            name = source.split(":", 1)[1].rsplit("@", 1)[0].rsplit("/", 1)[-1]
            assert by_speaker[name.split("-")[0]] == {split}, (name, split)
    with pytest.raises(ConfigError, match="^dataset.long_speaker: .* has no group"):
        prepare(dict(cfg, long_speaker=r"^\d+-"))
