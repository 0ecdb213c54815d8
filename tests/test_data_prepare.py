"""The data layer on tone folders: splits, sampling, cache, bad clips, clear errors."""

from __future__ import annotations

import math
import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf
from helpers.data import tone_dataset_cfg, word_clip, write_tone_root
from helpers.stages import last_json, run_stage

from kws_research import ownership
from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE, to_float
from kws_research.data.audio import decode_clip
from kws_research.data.dataset import prepare
from kws_research.data.layout import scan, which_set
from kws_research.errors import KwsError


def test_splits_follow_the_lists_and_sampling_follows_the_percentages(tone_cfg):
    data = prepare(tone_cfg)
    assert data.classes == ["silence", "unknown", "yes", "no", "up"]
    counts = data.summary["counts"]
    # 6 speakers x 2 repetitions per word: speaker 0 -> validation, 1 -> test, 2..5 -> train
    for split, per_word in (("train", 8), ("validation", 2), ("test", 2)):
        assert [counts[split][w] for w in ("yes", "no", "up")] == [per_word] * 3
        expected_extra = math.ceil(3 * per_word * 0.5)
        assert counts[split]["unknown"] == expected_extra
        assert counts[split]["silence"] == expected_extra
        assert len(data.splits[split]) == data.summary["totals"][split]
    train = data.splits["train"]
    assert train.audio.shape == (len(train), CLIP_SAMPLES) and train.audio.dtype == np.int16
    unknown_rows = [s for s, y in zip(train.sources, train.labels) if data.classes[y] == "unknown"]
    assert all(src.split("/")[0] in ("cat", "dog") for src in unknown_rows)
    assert data.summary["n_skipped"] == 0


def test_same_seed_same_task_other_seed_other_unknowns(tone_root, tmp_path):
    a = prepare(tone_dataset_cfg(tone_root, tmp_path / "a"))
    b = prepare(tone_dataset_cfg(tone_root, tmp_path / "b"))
    c = prepare(tone_dataset_cfg(tone_root, tmp_path / "c", seed=2))
    assert a.fingerprint == b.fingerprint
    assert a.splits["train"].sources == b.splits["train"].sources
    assert np.array_equal(np.asarray(a.splits["train"].audio), np.asarray(b.splits["train"].audio))
    assert a.fingerprint != c.fingerprint
    assert a.splits["train"].sources != c.splits["train"].sources


def test_cache_is_reused_and_a_changed_file_invalidates_it(tmp_path):
    root = write_tone_root(tmp_path / "root", speakers=4, reps=1)
    cfg = tone_dataset_cfg(root, tmp_path / "cache")
    first = prepare(cfg)
    assert first.summary["from_cache"] is False
    second = prepare(cfg)
    assert second.summary["from_cache"] is True
    assert second.path == first.path
    copy = tmp_path / "copy"  # an identical copy elsewhere (as tar extracts it: same bytes and times)
    shutil.copytree(root, copy)
    copied = prepare(dict(cfg, root=str(copy)))
    assert copied.summary["from_cache"] is True and copied.summary["root"] == str(copy)
    changed = root / "yes" / "spk0002_nohash_0.wav"
    new_audio = word_clip(4, 9, 9)
    sf.write(changed, new_audio, SAMPLE_RATE, subtype="PCM_16")
    os.utime(changed, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    third = prepare(cfg)
    assert third.summary["from_cache"] is False
    row = third.splits["train"].sources.index("yes/spk0002_nohash_0.wav")
    assert np.array_equal(third.splits["train"].audio[row], new_audio)


def test_the_audio_contract_is_the_tutorial_one():
    """The one place the published numbers are written out: 1 s at 16 kHz, int16 / 2**15."""
    assert (SAMPLE_RATE, CLIP_SAMPLES) == (16000, 16000)
    samples = np.array([-32768, -16384, 0, 16384, 32767], dtype=np.int16)
    assert np.allclose(to_float(samples), samples / 2**15)


def _plant_bad_clips(root):
    word = root / "yes"
    good = word_clip(0, 7, 0)
    (word / "zero_nohash_0.wav").write_bytes(b"")
    sf.write(word / "trunc_nohash_0.wav", good, SAMPLE_RATE, subtype="PCM_16")
    data = (word / "trunc_nohash_0.wav").read_bytes()
    (word / "trunc_nohash_0.wav").write_bytes(data[:20])
    (word / "text_nohash_0.wav").write_text("this is not audio at all\n" * 10)
    sf.write(word / "shortbody_nohash_0.wav", good, SAMPLE_RATE, subtype="PCM_16")
    data = (word / "shortbody_nohash_0.wav").read_bytes()
    (word / "shortbody_nohash_0.wav").write_bytes(data[: 44 + 2 * 6000])  # header says 16000 frames
    t = np.arange(8000) / 8000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 440 * t)], axis=1)
    sf.write(word / "stereo8k_nohash_0.wav", stereo, 8000, subtype="PCM_16")
    long = np.zeros(3 * SAMPLE_RATE)
    long[SAMPLE_RATE + 1000 : SAMPLE_RATE + 9000] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(8000) / SAMPLE_RATE)
    sf.write(word / "long3s_nohash_0.wav", long, SAMPLE_RATE, subtype="PCM_16")
    sf.write(word / "onehz_nohash_0.wav", np.array([0.1, -0.1, 0.1, -0.1]), 1, subtype="PCM_16")
    with open(os.fsencode(word) + b"/zz_\xff\xfe_nohash_0.wav", "wb") as handle:  # not UTF-8
        handle.write((word / "long3s_nohash_0.wav").read_bytes())
    (word / "loop_nohash_0.wav").symlink_to(word / "loop_nohash_0.wav")  # a link to itself


def test_planted_bad_clips_are_skipped_counted_and_listed(tmp_path):
    root = write_tone_root(tmp_path / "root", speakers=4, reps=1)
    _plant_bad_clips(root)
    data = prepare(tone_dataset_cfg(root, tmp_path / "cache"))
    skipped = {row["file"]: row["reason"] for row in data.summary["skipped"]}
    not_utf8 = "yes/zz_\\xff\\xfe_nohash_0.wav"
    assert set(skipped) == {
        "yes/zero_nohash_0.wav",
        "yes/trunc_nohash_0.wav",
        "yes/text_nohash_0.wav",
        "yes/onehz_nohash_0.wav",
        "yes/loop_nohash_0.wav",
        not_utf8,
    }
    assert "empty" in skipped["yes/zero_nohash_0.wav"]
    assert "below 8000 Hz" in skipped["yes/onehz_nohash_0.wav"] and "UTF-8" in skipped[not_utf8]
    assert "symbolic link to nothing" in skipped["yes/loop_nohash_0.wav"]
    assert data.summary["n_skipped"] == 6
    sources = [s for split in data.splits.values() for s in split.sources]
    assert "yes/stereo8k_nohash_0.wav" in sources and "yes/long3s_nohash_0.wav" in sources
    assert data.summary["n_truncated"] == 1 and "yes/shortbody_nohash_0.wav" in sources
    assert data.summary["truncated"] == [
        {
            "file": "yes/shortbody_nohash_0.wav",
            "reason": "truncated: the header promises 16000 frames, the file holds 6000",
        }
    ]
    assert not any(s in sources for s in skipped)


def test_other_rates_are_resampled_stereo_downmixed_long_clips_cropped(tmp_path):
    root = write_tone_root(tmp_path / "root", speakers=4, reps=1)
    _plant_bad_clips(root)
    stereo = decode_clip(root / "yes" / "stereo8k_nohash_0.wav")
    assert stereo.shape == (CLIP_SAMPLES,)
    spectrum = np.abs(np.fft.rfft(stereo[: CLIP_SAMPLES // 2].astype(float)))
    assert abs(np.argmax(spectrum) * 2 - 440) <= 2  # still 440 Hz after 8 -> 16 kHz
    long = decode_clip(root / "yes" / "long3s_nohash_0.wav")
    assert long.shape == (CLIP_SAMPLES,)
    assert np.abs(long.astype(float)).sum() > 0.95 * 0.5 * 32767 * 8000 * 2 / np.pi  # the burst is kept


def test_without_lists_the_speaker_hash_decides_and_keeps_speakers_together(tmp_path):
    root = write_tone_root(tmp_path / "root", speakers=30, reps=2, lists=False)
    layout = scan(root)
    assert layout.validation_list is None and layout.testing_list is None
    data = prepare(tone_dataset_cfg(root, tmp_path / "cache", validation_percentage=20, testing_percentage=20))
    seen = {}
    for split, arrays in data.splits.items():
        for src in arrays.sources:
            if src.startswith("silence:"):
                continue
            speaker = src.split("/")[1].split("_nohash_")[0]
            assert seen.setdefault(speaker, split) == split
    assert {"train", "validation", "test"} == set(seen.values())


def test_which_set_is_stable_per_speaker_and_proportional():
    names = [f"w/{i:08x}_nohash_{r}.wav" for i in range(4000) for r in range(2)]
    splits = [which_set(n, 10, 10) for n in names]
    assert all(splits[i] == splits[i + 1] for i in range(0, len(names), 2))
    share = {s: splits.count(s) / len(splits) for s in ("train", "validation", "test")}
    assert 0.08 < share["validation"] < 0.12 and 0.08 < share["test"] < 0.12


def test_missing_root_empty_root_and_missing_word_name_the_problem(tmp_path, tone_root):
    with pytest.raises(KwsError, match=r"dataset.root: .*nope does not exist"):
        prepare(tone_dataset_cfg(tmp_path / "nope", tmp_path / "c"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(KwsError, match=r"dataset.root: .*empty has no word folders"):
        prepare(tone_dataset_cfg(tmp_path / "empty", tmp_path / "c"))
    with pytest.raises(KwsError, match=r"dataset.commands: no folder for \['go'\]"):
        prepare(tone_dataset_cfg(tone_root, tmp_path / "c", commands=["yes", "go"]))
    with pytest.raises(KwsError, match="quote the words"):
        prepare(tone_dataset_cfg(tone_root, tmp_path / "c", commands=[True, "up"]))


def test_list_naming_missing_files_warns_with_the_path(tmp_path):
    root = write_tone_root(tmp_path / "root", speakers=4, reps=1)
    with open(root / "testing_list.txt", "a") as handle:
        handle.write("yes/ghost_nohash_0.wav\n")
    data = prepare(tone_dataset_cfg(root, tmp_path / "cache"))
    assert any("yes/ghost_nohash_0.wav" in w and "missing" in w for w in data.summary["warnings"])


def test_cache_never_goes_next_to_the_data_root(tmp_path):
    root = write_tone_root(tmp_path / "root", speakers=4, reps=1)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    prepare(tone_dataset_cfg(root, tmp_path / "cache"))
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_prepare_cli_prints_table_and_json_summary_last(tmp_path, tone_root):
    result = run_stage(
        "prepare", "dataset=speech_commands", f"dataset.root={tone_root}", "dataset.commands=[yes,no,up]", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    summary = last_json(result.stdout)
    assert summary["classes"] == ["silence", "unknown", "yes", "no", "up"]
    assert "validation" in result.stdout.splitlines()[2]  # the table header
    cache = tmp_path / summary["cache"]
    assert (cache / "summary.json").is_file()
    assert summary["counts"]["train"]["yes"] == 8


def test_prepare_cli_bad_root_is_one_line_and_nonzero(tmp_path):
    result = run_stage("prepare", "dataset=speech_commands", f"dataset.root={tmp_path}/missing", cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("error: dataset.root:") and "missing" in errors[-1]
    assert "Traceback" not in result.stderr


def test_copy_of_root_has_same_fingerprint(tmp_path, tone_root):
    copy = shutil.copytree(tone_root, tmp_path / "copy")
    a = prepare(tone_dataset_cfg(tone_root, tmp_path / "c1"))
    b = prepare(tone_dataset_cfg(copy, tmp_path / "c2"))
    assert a.fingerprint == b.fingerprint


def test_temporaries_of_dead_processes_are_cleaned_and_space_is_checked_first(tmp_path, tone_root):
    from kws_research.data.cache import ensure_space

    prepared = tmp_path / "cache" / "prepared"
    stale = ownership.new_folder(prepared / ".tones-0123456789abcdef.99999999.tmp", "cache")  # no such process
    (stale / "train.audio.npy").write_bytes(b"half written")
    mine = ownership.new_folder(prepared / f".other.{os.getpid()}.tmp", "cache")  # a live process's work
    users = prepared / ".notes.99999998.tmp"  # the same shape of name, but not the harness's
    users.mkdir()
    (users / "keep.txt").write_text("mine")
    prepare(tone_dataset_cfg(tone_root, tmp_path / "cache"))
    assert not stale.exists() and mine.exists() and (users / "keep.txt").read_text() == "mine"
    with pytest.raises(KwsError, match=r"^dataset.cache_dir: .* free, the cache needs .*; free some space"):
        ensure_space(tmp_path, 1 << 60)
