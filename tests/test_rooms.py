"""Simulated rooms (pyroomacoustics): their RT60, the cache, and reverberation in
training augmentation and in evaluation streams."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.data import tone_dataset_cfg

from kws_research.contract import SAMPLE_RATE
from kws_research.data.dataset import prepare
from kws_research.data.rooms import RoomSettings, measured_rt60, reverberate, rooms_for, simulate
from kws_research.errors import ConfigError
from kws_research.streaming import streams
from kws_research.streaming.settings import StreamSettings
from kws_research.training.augment import AugmentSettings, WaveformAugmenter

SMALL = RoomSettings(count=4, rt60=(0.2, 0.6), distance=(0.5, 3.0), seed=3)


def test_simulated_rooms_have_the_rt60_they_were_drawn_with():
    import pyroomacoustics as pra

    rooms = simulate(SMALL)
    assert len(rooms.responses) == 4 and np.unique(rooms.rt60).size == 4
    for response, drawn, kept, metres in zip(rooms.responses, rooms.rt60, rooms.measured_rt60, rooms.distance):
        assert 0.2 <= drawn <= 0.6 and 0.5 <= metres <= 3.0
        assert measured_rt60(response) == pytest.approx(kept)
        # pyroomacoustics' own T30 estimate, independent of ours: within 15% of the RT60 drawn
        assert pra.experimental.measure_rt60(response, fs=SAMPLE_RATE, decay_db=30) == pytest.approx(drawn, rel=0.15)
        assert int(np.argmax(np.abs(response))) < 64  # the direct path first
        assert response.size > 0.5 * drawn * SAMPLE_RATE  # the decay is kept


def test_rooms_are_seeded_cached_and_checked(tmp_path):
    first = rooms_for(SMALL, tmp_path)
    stored = list((tmp_path / "rooms").iterdir())
    again = rooms_for(SMALL, tmp_path)  # read back, not simulated again
    assert all(np.array_equal(a, b) for a, b in zip(first.responses, again.responses))
    assert [p for p in (tmp_path / "rooms").iterdir()] == stored
    other = simulate(RoomSettings(count=4, rt60=(0.2, 0.6), distance=(0.5, 3.0), seed=4))
    assert not np.array_equal(first.responses[0][:200], other.responses[0][:200])
    for cfg, key in (
        ({"rt60": [0.9, 0.1]}, "augment.rooms.rt60"),
        ({"distance": [0.5]}, "augment.rooms.distance"),
        ({"count": 0}, "augment.rooms.count"),
        ({"size": 3}, "augment.rooms"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            RoomSettings.from_config(cfg, "augment.rooms")


def test_reverberation_keeps_length_and_level_and_adds_the_decay():
    rng = np.random.default_rng(0)
    clip = (0.1 * rng.standard_normal(SAMPLE_RATE) * (np.arange(SAMPLE_RATE) < 4000)).astype(np.float32)
    response = simulate(SMALL).responses[0]
    wet = reverberate(clip, response)
    assert wet.shape == clip.shape
    assert np.sqrt(np.mean(wet**2)) == pytest.approx(np.sqrt(np.mean(clip**2)), rel=1e-4)
    assert np.abs(wet[6000:]).max() > 10 * np.abs(clip[6000:]).max() + 1e-3  # the room rings on after the word
    assert reverberate(clip, response, tail=True).size == clip.size + response.size - 1


def test_augmentation_sends_its_share_of_clips_through_a_room(tmp_path):
    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal((32, SAMPLE_RATE))).astype(np.float32)
    audio[:, 8000:] = 0.0
    settings = AugmentSettings.from_config({"reverb": 0.5, "rooms": {"count": 2, "rt60": [0.3, 0.4], "seed": 1}})
    rooms = rooms_for(settings.rooms, tmp_path)
    out = WaveformAugmenter(settings, np.zeros(0, np.int16), [], seed=5, rooms=rooms)(audio.copy(), step=3)
    changed = np.abs(out - audio).max(axis=1) > 1e-4
    assert 6 <= changed.sum() <= 26  # about half of the 32
    assert np.all(np.abs(out[changed, 9000:]).max(axis=1) > 1e-3)  # their decay after the word
    np.testing.assert_array_equal(out[~changed], audio[~changed])
    again = WaveformAugmenter(settings, np.zeros(0, np.int16), [], seed=5, rooms=rooms)(audio.copy(), step=3)
    np.testing.assert_array_equal(out, again)  # keyed by (seed, step)
    with pytest.raises(ConfigError, match="augment.reverb"):
        AugmentSettings.from_config({"reverb": 1.5})


def test_streams_with_reverb_hear_words_through_rooms(tone_root, tmp_path):
    data = prepare(tone_dataset_cfg(tone_root, tmp_path / "cache"))
    base = {
        "validation": {"mixed_minutes": 1, "negatives_minutes": 1},
        "test": {"mixed_minutes": 1, "negatives_minutes": 1},
        "snr_db": [60],
    }
    rooms = {"count": 2, "rt60": [0.4, 0.5], "seed": 2}
    dry_settings = StreamSettings.from_config(base)
    wet_settings = StreamSettings.from_config({**base, "reverb": 1.0, "rooms": rooms})
    dry = streams.build(data, "test", "mixed", 60, dry_settings, seed=0)
    wet = streams.build(data, "test", "mixed", 60, wet_settings, seed=0)

    def ringing(stream) -> float:
        """Median over words of the level 50-100 ms after the word ends over the level just
        before the next word starts (the noise floor, 60 dB under the words)."""
        ratios = []
        for e, following in zip(stream.events, stream.events[1:]):
            end, start = round(e["end"] * SAMPLE_RATE), round(following["start"] * SAMPLE_RATE)
            after = np.abs(stream.audio[end + 800 : end + 1600].astype(np.float64)).mean()
            before = np.abs(stream.audio[start - 1600 : start - 800].astype(np.float64)).mean()
            ratios.append(after / (before + 1.0))
        return float(np.median(ratios))

    assert len(wet.events) > 5 and len(dry.events) > 5
    assert ringing(wet) > 5.0 and ringing(dry) < 2.0  # each word's decay runs on into the gap after it
    assert wet_settings.stream_identity() != dry_settings.stream_identity()
    assert streams.digest(data, "test", "mixed", 60, wet_settings, 0) != streams.digest(
        data, "test", "mixed", 60, dry_settings, 0
    )
    with pytest.raises(ConfigError, match="stream.rooms.rt60"):
        StreamSettings.from_config({**base, "reverb": 0.5, "rooms": {"rt60": [1, 0.1]}})


def test_the_new_options_compose_and_bad_values_name_their_key():
    from kws_research.config import compose

    cfg = compose(
        "train",
        [
            "stream.background=conversation",
            "stream.reverb=0.5",
            "augment.reverb=0.3",
            "augment.rooms.rt60=[0.2,0.5]",
            "dataset.synthetic_speech.engines=[espeak,piper]",
        ],
    )
    assert cfg.stream.background == "conversation" and cfg.augment.rooms.rt60 == [0.2, 0.5]
    for override, key in (
        ("stream.reverb=1.5", "stream.reverb"),
        ("augment.rooms.rt60=[0.01,3]", "augment.rooms.rt60"),
        ("stream.background=party", "stream.background"),
        ("dataset.generator.engines=[festival]", "dataset.generator.engines"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            compose("train", [override])
