"""Pseudo-conversation of a split's own words: as an unknown source and as the
background of negatives-only streams, built only from that split."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from helpers.data import tone_dataset_cfg

from kws_research.contract import SAMPLE_RATE
from kws_research.data.conversation import GAP_SECONDS, conversation
from kws_research.data.dataset import prepare
from kws_research.data.layout import scan, speaker_id
from kws_research.errors import KwsError
from kws_research.labels import UNKNOWN
from kws_research.streaming import streams
from kws_research.streaming.settings import StreamSettings


def _tone(hz: float, seconds: float = 0.4) -> np.ndarray:
    clip = np.zeros(SAMPLE_RATE, np.int16)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    clip[4000 : 4000 + t.size] = (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return clip


def _zero_runs(x: np.ndarray, shortest: int = 200) -> np.ndarray:
    """Lengths of the runs of exact zeros of at least ``shortest`` samples, first and last left out."""
    zero = np.concatenate([[0], (x == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))
    runs = edges[1::2] - edges[::2]
    return runs[runs >= shortest][1:-1]


def test_a_conversation_is_utterances_after_short_gaps_with_a_quieter_second_talker():
    words, commands = [_tone(300 + 40 * i) for i in range(8)], [_tone(2000)]
    alone = conversation(words, commands, 60 * SAMPLE_RATE, np.random.default_rng(0), overlap=0.0)
    gaps = _zero_runs(alone)
    low, high = (int(s * SAMPLE_RATE) for s in GAP_SECONDS)
    assert gaps.size > 50 and gaps.min() >= low - 160 and gaps.max() <= high + 160
    assert np.abs(alone).max() <= 8001  # one talker: never two utterances at once
    spectrum = np.abs(np.fft.rfft(alone))
    freqs = np.fft.rfftfreq(alone.size, 1 / SAMPLE_RATE)
    assert spectrum[np.argmin(np.abs(freqs - 2000))] > 0.01 * spectrum.max()  # command onsets are in it
    both = conversation(words, commands, 60 * SAMPLE_RATE, np.random.default_rng(0), overlap=1.0)
    assert _zero_runs(both).sum() < 0.5 * gaps.sum()  # the second talker fills most gaps
    second = both - alone
    assert 0 < np.abs(second).max() <= 10 ** (-10 / 20) * 8001 + 1  # 10 dB down
    again = conversation(words, commands, 60 * SAMPLE_RATE, np.random.default_rng(0), overlap=1.0)
    np.testing.assert_array_equal(both, again)
    with pytest.raises(ValueError, match="non-command words"):
        conversation([], commands, SAMPLE_RATE, np.random.default_rng(0))


def test_negatives_streams_talk_only_with_their_own_splits_words(tone_root, tmp_path):
    data = prepare(tone_dataset_cfg(tone_root, tmp_path / "cache", unknown_percentage=100.0))
    base = {
        "validation": {"mixed_minutes": 1, "negatives_minutes": 1},
        "test": {"mixed_minutes": 1, "negatives_minutes": 1},
    }
    talked = StreamSettings.from_config({**base, "background": "conversation"})
    quiet = streams.build(data, "validation", "negatives", 60, StreamSettings.from_config(base), seed=0)
    stream = streams.build(data, "validation", "negatives", 60, talked, seed=0)
    talk = stream.audio.astype(float) - quiet.audio.astype(float)  # the same words and noise, then the talk
    words = np.mean(
        [
            np.mean(quiet.audio[round(e["start"] * 16000) : round(e["end"] * 16000)].astype(float) ** 2)
            for e in quiet.events
        ]
    )
    assert 10 * np.log10(np.mean(talk**2) / words) == pytest.approx(-talked.background_snr_db, abs=1.0)
    # other splits' audio replaced by silence: the validation stream does not change
    silent = {
        name: dataclasses.replace(split, audio=np.zeros_like(np.asarray(split.audio)))
        for name, split in data.splits.items()
        if name != "validation"
    }
    others_silent = dataclasses.replace(data, splits={**data.splits, **silent})
    np.testing.assert_array_equal(
        streams.build(others_silent, "validation", "negatives", 60, talked, seed=0).audio, stream.audio
    )
    assert talked.stream_identity()["background"] == "conversation"


def test_conversation_is_an_unknown_source_of_the_splits_own_words(tone_root, tmp_path):
    cfg = tone_dataset_cfg(
        tone_root, tmp_path / "c", unknown_sources={"words": 1.0, "conversation": 1.0}, unknown_percentage=100.0
    )
    data = prepare(cfg)
    counts = data.summary["unknown_sources"]
    assert counts["train"]["conversation"] > 0 and "conversation" not in counts["validation"]
    rows = [(i, s) for i, s in enumerate(data.splits["train"].sources) if s.startswith("conversation:")]
    assert len(rows) == counts["train"]["conversation"]
    layout = scan(tone_root)
    split_of = {
        e.path: layout.split_of(e, 10.0, 10.0)  # the root has lists: they decide
        for entries in layout.words.values()
        for e in entries
    }
    unknown = data.classes.index("unknown")
    for index, source in rows:
        paths = source.split(":", 2)[2].split("+")
        assert paths[-1].split("/")[0] in ("yes", "no", "up")  # the command clip it takes onsets from
        assert all(p.split("/")[0] not in ("yes", "no", "up") for p in paths[:-1])
        assert {split_of[p] for p in paths} == {"train"}  # the training split's own speakers
        assert data.splits["train"].labels[index] == unknown
        assert np.abs(np.asarray(data.splits["train"].audio[index])).max() > 100
    again = prepare({**cfg, "cache_dir": str(tmp_path / "d")})
    assert again.splits["train"].sources == data.splits["train"].sources  # seeded
    np.testing.assert_array_equal(np.asarray(again.splits["train"].audio), np.asarray(data.splits["train"].audio))


def test_streams_hear_the_heldout_words_of_their_own_speakers_only(tone_root, tmp_path):
    cfg = tone_dataset_cfg(tone_root, tmp_path / "cache", unknown_percentage=100.0, heldout_unknown_words=["dog"])
    data = prepare(cfg)
    heldout = data.splits["heldout"].sources
    speaker = {"spk0000": "validation", "spk0001": "test"}  # the root's lists; everyone else trains
    assert data.heldout_splits == [speaker.get(speaker_id(s), "train") for s in heldout]
    settings = StreamSettings.from_config(
        {
            "validation": {"mixed_minutes": 1, "negatives_minutes": 2},
            "test": {"mixed_minutes": 1, "negatives_minutes": 2},
            "background": "conversation",
        }
    )
    heard = {}
    for split in ("train", "validation", "test"):
        stream = streams.build(data, split, "negatives", 120, settings, seed=0)
        heard[split] = {data.heldout_splits[e["clip"][1]] for e in stream.events if e["clip"][0] == "heldout"}
    # the certificate is earned on never-trained words too, each split from its own speakers
    assert heard == {"train": set(), "validation": {"validation"}, "test": {"test", "train"}}
    # a cache written before the held-out clips knew their speakers' split is rebuilt in place
    meta = data.path / "meta.json"
    old = json.loads(meta.read_text())
    del old["heldout_splits"]
    meta.write_text(json.dumps(old))
    again = prepare(cfg)
    assert again.path == data.path and again.heldout_splits == data.heldout_splits
    assert not again.summary["from_cache"]


def test_talk_and_conversation_play_together_each_at_its_level(tone_root, tmp_path):
    data = prepare(tone_dataset_cfg(tone_root, tmp_path / "cache", unknown_percentage=100.0))
    base = {
        "validation": {"mixed_minutes": 1, "negatives_minutes": 1},
        "test": {"mixed_minutes": 1, "negatives_minutes": 1},
    }
    settings = {name: StreamSettings.from_config({**base, "background": name}) for name in ("conversation", None)}
    both = StreamSettings.from_config({**base, "background": ["conversation", "long_folder"]})
    assert both.backgrounds == ("conversation", "long_folder") and both.recordings == "long_folder"
    talk = np.random.default_rng(5).normal(0, 3000, 20 * SAMPLE_RATE).astype(np.int16)  # a long recording
    quiet = streams.build(data, "validation", "negatives", 60, settings[None], seed=0)
    talked = streams.build(data, "validation", "negatives", 60, settings["conversation"], seed=0)
    mixed = streams.build(data, "validation", "negatives", 60, both, seed=0, background=talk)
    conversation_part = talked.audio.astype(float) - quiet.audio.astype(float)
    recording_part = mixed.audio.astype(float) - talked.audio.astype(float)  # the same stream, then the recording
    level = 10 * np.log10(np.mean(recording_part**2) / np.mean(conversation_part**2))
    assert level == pytest.approx(0.0, abs=1.0)  # each background_snr_db under the words
    with pytest.raises(KwsError, match=r"^stream\.background: takes one of speech and long_folder"):
        StreamSettings.from_config({**base, "background": ["speech", "long_folder"]})
    with pytest.raises(KwsError, match=r"^stream\.background: .* is not null or one or more of"):
        StreamSettings.from_config({**base, "background": ["conversation", "talk"]})


def test_streams_can_take_their_words_from_more_sources_in_every_split(tone_root, tmp_path):
    from kws_research.streaming.runs import stream_source

    cfg = tone_dataset_cfg(tone_root, tmp_path / "cache")
    data = prepare(cfg)
    settings = StreamSettings.from_config(
        {
            "validation": {"mixed_minutes": 1, "negatives_minutes": 1},
            "test": {"mixed_minutes": 1, "negatives_minutes": 1},
            "unknown_sources": {"words": 0.5, "reversed": 0.5},
        }
    )
    source = stream_source(cfg, data, settings)
    for split in ("validation", "test"):
        part = source.splits[split]
        kinds = {s.split(":", 1)[0] for s, label in zip(part.sources, part.labels) if source.classes[label] == UNKNOWN}
        assert "reversed" in kinds, (split, kinds)
    assert source.splits["train"].audio.shape != data.splits["train"].audio.shape  # prepared with 100% unknowns
