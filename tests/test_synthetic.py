"""The embedded espeak-ng data set: layout, speakers per split, determinism."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers.data import tone_dataset_cfg

from kws_research import ownership
from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE
from kws_research.data.dataset import prepare
from kws_research.data.layout import scan, speaker_id
from kws_research.data.synthetic import COMPLETE_MARKER, GeneratorSettings, generate
from kws_research.data.words import SPEECH_COMMANDS_WORDS
from kws_research.errors import KwsError


def test_generated_root_has_the_official_layout(tiny_synthetic):
    layout = scan(tiny_synthetic)
    assert sorted(layout.words) == sorted(SPEECH_COMMANDS_WORDS)
    assert all(len(clips) == 6 for clips in layout.words.values())  # 6 speakers x 1 repetition
    assert len(layout.noise_files) >= 5
    assert layout.validation_list and layout.testing_list
    audio, rate = sf.read(tiny_synthetic / layout.words["yes"][0].path, dtype="int16")
    assert rate == SAMPLE_RATE and audio.shape == (CLIP_SAMPLES,)
    assert np.abs(audio).max() > 1000  # a word is in there, not silence


def test_each_speaker_stays_in_one_split(tiny_synthetic):
    layout = scan(tiny_synthetic)
    split_of = {}
    for entries in layout.words.values():
        for entry in entries:
            split = layout.split_of(entry, 10, 10)
            assert split_of.setdefault(entry.speaker, split) == split
    assert set(split_of.values()) == {"train", "validation", "test"}
    description = json.loads((tiny_synthetic / ".complete.json").read_text())
    assert {v["split"] for v in description["speakers"].values()} == {"train", "validation", "test"}
    assert all(speaker_id(e.path) in description["speakers"] for e in layout.words["go"])


def test_generation_is_deterministic_and_seeded(tmp_path, tiny_synthetic):
    words = ("yes", "no", "marvin")
    settings = GeneratorSettings(speakers=3, repetitions=2, words=words, noise_seconds=2.0, seed=5)
    generate(tmp_path / "a", settings)
    generate(tmp_path / "b", settings)
    generate(tmp_path / "c", GeneratorSettings(speakers=3, repetitions=2, words=words, noise_seconds=2.0, seed=6))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.wav"))
    assert len(files) == 3 * 3 * 2 + 6
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert sorted(p.relative_to(tmp_path / "c") for p in (tmp_path / "c").rglob("*.wav")) != files


def test_synthetic_root_prepares_like_real_data(tiny_synthetic, tmp_path):
    cfg = tone_dataset_cfg(
        tiny_synthetic,
        tmp_path / "cache",
        commands=["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"],
        unknown_percentage=10.0,
        silence_percentage=10.0,
    )
    data = prepare(cfg)
    assert data.classes[:2] == ["silence", "unknown"] and len(data.classes) == 12
    for split in ("train", "validation", "test"):
        counts = data.summary["counts"][split]
        assert counts["yes"] > 0 and counts["unknown"] > 0 and counts["silence"] > 0
    assert data.summary["n_skipped"] == 0


def test_empty_utterances_are_skipped_and_counted(tmp_path):
    """espeak-ng speaks nothing for punctuation: such utterances are skipped, not fatal."""
    settings = GeneratorSettings(speakers=3, repetitions=1, words=("yes", "-"), noise_seconds=1.0)
    description = generate(tmp_path / "root", settings)
    assert description["empty_utterances"] == {"-": 3}
    assert description["clips"] == 3
    assert not list((tmp_path / "root" / "-").iterdir())
    assert len(list((tmp_path / "root" / "yes").glob("*.wav"))) == 3


def test_two_first_runs_at_once_generate_the_data_set_once_and_clean_dead_attempts(tmp_path):
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr);"
        "from pathlib import Path;"
        "from kws_research.data.synthetic import GeneratorSettings, ensure_generated;"
        "ensure_generated(Path(sys.argv[1]), GeneratorSettings(speakers=3, repetitions=1, "
        "words=('yes', 'no', 'up', 'down'), noise_seconds=1.0))"
    )
    target = tmp_path / "root"
    killed = ownership.new_folder(tmp_path / ".root.99999999.tmp", "generated root")  # a killed generator's
    (killed / "yes").mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(target)], stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert sum("generating the synthetic data set" in e for e in errors) == 1
    assert json.loads((target / ".complete.json").read_text())["clips"] == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "root.lock"]


def test_piper_is_a_second_seeded_engine_with_its_own_speakers(tmp_path):
    words = ("yes", "seven")
    settings = GeneratorSettings(speakers=3, repetitions=2, words=words, noise_seconds=2.0, seed=5, engines=("piper",))
    generate(tmp_path / "a", settings)
    generate(tmp_path / "b", settings)
    described = json.loads((tmp_path / "a" / COMPLETE_MARKER).read_text())
    assert {v["voice"].split("+")[0] for v in described["speakers"].values()} == {"piper:joe"}
    assert described["clips"] == 3 * 2 * len(words) and not described["empty_utterances"]
    clips = sorted(p for word in words for p in (tmp_path / "a" / word).glob("*.wav"))
    assert len(clips) == 12
    for clip in clips:  # seeded: the same settings give the same audio, file for file
        audio = sf.read(clip, dtype="int16")[0]
        assert np.abs(audio).max() > 1000
        np.testing.assert_array_equal(
            audio, sf.read(tmp_path / "b" / clip.relative_to(tmp_path / "a"), dtype="int16")[0]
        )
    first, second = (sf.read(p, dtype="int16")[0] for p in sorted((tmp_path / "a" / "yes").glob("*.wav"))[:2])
    assert not np.array_equal(first, second)  # other manners, other utterances
    both = GeneratorSettings(speakers=3, repetitions=1, words=words, engines=("espeak", "piper"))
    assert both.digest() != GeneratorSettings(speakers=3, repetitions=1, words=words).digest()
    with pytest.raises(KwsError, match="engines"):
        GeneratorSettings.from_config({"engines": ["festival"]}, "dataset.generator")


def test_a_damaged_generated_set_says_so_and_refresh_generates_it_again(tmp_path):
    """A word folder deleted from the harness's own set read as a wrong dataset.commands."""
    import shutil

    from omegaconf import OmegaConf

    from kws_research.config import compose

    overrides = [
        "dataset=synthetic",
        f"dataset.cache_dir={tmp_path}/cache",
        "dataset.generator.speakers=3",
        "dataset.generator.repetitions=1",
        "dataset.generator.noise_seconds=12",
    ]
    cfg = OmegaConf.to_container(compose("prepare", overrides).dataset, resolve=True)
    first = prepare(cfg)
    root = tmp_path / "cache" / "synthetic"
    (generated,) = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    shutil.rmtree(generated / "yes")
    with pytest.raises(
        KwsError, match=r"^dataset.root: the generated data set .* is damaged \(no folder for \['yes'\]\)"
    ):
        prepare(cfg)
    again = prepare(cfg, refresh=True)
    assert (generated / "yes").is_dir() and again.fingerprint == first.fingerprint  # seeded: the same set
