"""Reading a folder laid out like the official Speech Commands archive.

    ROOT/WORD/SPEAKER_nohash_N.wav       one folder per word
    ROOT/_background_noise_/*.wav        long noise recordings
    ROOT/validation_list.txt             optional split lists (relative paths)
    ROOT/testing_list.txt

Without the lists, clips are split by the official ``which_set`` SHA-1 hash of
the speaker id, so a speaker never crosses splits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from kws_research.errors import KwsError

log = logging.getLogger(__name__)

BACKGROUND_NOISE_DIR = "_background_noise_"
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
SPLITS = ("train", "validation", "test")
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # constant of the official which_set()
AUDIO_SUFFIXES = (".wav",)


@dataclass(frozen=True)
class FileEntry:
    """One file under the root, with what the fingerprint and the cache need."""

    path: str  # relative POSIX path, e.g. "yes/0a7c2a8d_nohash_0.wav"
    size: int
    mtime_ns: int

    @property
    def word(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def speaker(self) -> str:
        return speaker_id(self.path)


@dataclass
class Layout:
    """What a Speech Commands root holds, before any task is built from it."""

    root: Path
    words: dict[str, list[FileEntry]]
    noise_files: list[FileEntry]
    validation_list: set[str] | None
    testing_list: set[str] | None
    missing_in_lists: list[str] = field(default_factory=list)
    unusable_names: dict[str, str] = field(default_factory=dict)  # printable path -> why it is skipped

    def all_files(self) -> list[FileEntry]:
        files = [f for entries in self.words.values() for f in entries]
        return files + list(self.noise_files)

    def split_of(self, entry: FileEntry, validation_pct: float, testing_pct: float) -> str:
        """The split of a clip: from the lists when the root has them, else the hash."""
        if self.validation_list is not None or self.testing_list is not None:
            if self.validation_list and entry.path in self.validation_list:
                return "validation"
            if self.testing_list and entry.path in self.testing_list:
                return "test"
            return "train"
        return which_set(entry.path, validation_pct, testing_pct)


def speaker_id(path: str) -> str:
    """The speaker part of a clip name: everything before ``_nohash_``."""
    name = path.rsplit("/", 1)[-1]
    return re.sub(r"_nohash_.*$", "", name)


def which_set(path: str, validation_percentage: float, testing_percentage: float) -> str:
    """The official Speech Commands split rule (tensorflow/examples/speech_commands)."""
    hashed = hashlib.sha1(speaker_id(path).encode("utf-8")).hexdigest()
    percentage = (int(hashed, 16) % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    if percentage < validation_percentage + testing_percentage:
        return "test"
    return "train"


NOT_UTF8 = "name is not valid UTF-8; rename it to use it"
BROKEN_LINK = "a symbolic link to nothing (broken, or a loop); fix or remove it"


def printable(path: Path, root: Path) -> str:
    """A relative path that can be written to JSON and a terminal, whatever its bytes."""
    return os.fsencode(path.relative_to(root)).decode("utf-8", "backslashreplace")


def utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by Python as surrogate escapes
        return False
    return True


def _entries(folder: Path, root: Path, unusable: dict[str, str]) -> list[FileEntry]:
    entries = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        if path.is_symlink() and not path.exists():
            unusable[printable(path, root)] = BROKEN_LINK
            continue
        if not path.is_file():
            continue
        if not utf8_name(path.name):
            unusable[printable(path, root)] = NOT_UTF8
            continue
        stat = path.stat()
        entries.append(FileEntry(path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns))
    return entries


def _read_list(path: Path) -> set[str] | None:
    if not path.is_file():
        return None
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip().replace("\\", "/")
        if line:
            names.add(line[2:] if line.startswith("./") else line)
    return names


def scan(root: Path | str) -> Layout:
    """Scan ``root``; raise a one-line :class:`KwsError` when it cannot be a data set."""
    root = Path(root).expanduser()
    if not root.exists():
        raise KwsError(
            f"dataset.root: {root} does not exist; point dataset.root at a folder in the "
            "Speech Commands layout (WORD/*.wav) or use dataset=speech_commands_v2 dataset.download=true"
        )
    if not root.is_dir():
        raise KwsError(f"dataset.root: {root} is not a folder; point it at the folder that holds the word folders")
    words: dict[str, list[FileEntry]] = {}
    unusable: dict[str, str] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.startswith((".", "_")):
            continue
        if not utf8_name(folder.name):
            unusable[printable(folder, root) + "/"] = NOT_UTF8
            continue
        entries = _entries(folder, root, unusable)
        if entries:
            words[folder.name] = entries
    if not words:
        raise KwsError(
            f"dataset.root: {root} has no word folders with .wav clips; expected the Speech Commands "
            "layout ROOT/WORD/*.wav"
        )
    noise_dir = root / BACKGROUND_NOISE_DIR
    noise_files = _entries(noise_dir, root, unusable) if noise_dir.is_dir() else []
    validation = _read_list(root / VALIDATION_LIST)
    testing = _read_list(root / TESTING_LIST)
    present = {f.path for entries in words.values() for f in entries}
    missing = sorted((validation or set()) - present) + sorted((testing or set()) - present)
    if missing:
        log.warning(
            "%d file(s) named in %s/%s are missing under %s (first: %s); they are ignored",
            len(missing),
            VALIDATION_LIST,
            TESTING_LIST,
            root,
            missing[0],
        )
    if unusable:
        log.warning("skipped %d file(s) whose names are not UTF-8 (first: %s)", len(unusable), next(iter(unusable)))
    return Layout(root, words, noise_files, validation, testing, missing, unusable)
