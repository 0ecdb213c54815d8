"""The on-disk cache of decoded splits.

One folder per data set fingerprint holds, per split, ``<split>.audio.npy``
(int16, N x 16000, opened memory-mapped), ``<split>.labels.npy`` and
``<split>.sources.json``; ``noise.npy`` with the background recordings;
``meta.json`` and ``summary.json``. Folders are written under a temporary name
and renamed when complete, so an interrupted ``prepare`` never leaves a cache
that looks valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kws_research.data.layout import Layout

CACHE_VERSION = 1


def fingerprint(layout: Layout, settings: dict) -> str:
    """Identity of a prepared data set: file list, sizes, split lists and settings.

    Stable across machines (no paths, no times), so runs on the same data can be
    matched by it (the baseline lookup does).
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({"cache_version": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for entry in layout.all_files():
        digest.update(f"{entry.path}\0{entry.size}\n".encode())
    for name, listed in (("validation", layout.validation_list), ("test", layout.testing_list)):
        digest.update(f"[{name}]".encode())
        for path in sorted(listed or ()):
            digest.update(path.encode() + b"\n")
    return digest.hexdigest()


def stat_signature(layout: Layout, extra: list[str] = ()) -> str:
    """Modification times of every file: a changed file invalidates the cache."""
    digest = hashlib.sha256()
    for entry in layout.all_files():
        digest.update(f"{entry.path}\0{entry.mtime_ns}\n".encode())
    for line in extra:
        digest.update(line.encode() + b"\n")
    return digest.hexdigest()


@dataclass
class SplitArrays:
    """One split: int16 audio (memory-mapped), integer labels, and where each row came from."""

    audio: np.ndarray
    labels: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class PreparedData:
    """A decoded data set ready for training."""

    name: str
    classes: list[str]
    splits: dict[str, SplitArrays]
    noise: np.ndarray
    noise_files: list[dict]
    fingerprint: str
    path: Path
    summary: dict = field(default_factory=dict)

    def noise_segments(self, split: str = "train") -> list[tuple[int, int]]:
        """(start, stop) of the part of each recording reserved for ``split``."""
        from kws_research.data.task import NOISE_SPLIT_FRACTIONS

        lo, hi = NOISE_SPLIT_FRACTIONS[split]
        return [
            (f["start"] + int(f["length"] * lo), f["start"] + int(f["length"] * hi))
            for f in self.noise_files
        ]


def is_valid(path: Path, signature: str) -> bool:
    meta = path / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("stat_signature") == signature
    except (OSError, json.JSONDecodeError):
        return False


def load(path: Path) -> PreparedData:
    """Open a complete cache folder; audio stays on disk (memory-mapped)."""
    meta = json.loads((path / "meta.json").read_text())
    splits = {}
    for split in meta["splits"]:
        splits[split] = SplitArrays(
            audio=np.load(path / f"{split}.audio.npy", mmap_mode="r"),
            labels=np.load(path / f"{split}.labels.npy"),
            sources=json.loads((path / f"{split}.sources.json").read_text()),
        )
    summary = json.loads((path / "summary.json").read_text())
    return PreparedData(
        name=meta["name"],
        classes=meta["classes"],
        splits=splits,
        noise=np.load(path / "noise.npy", mmap_mode="r"),
        noise_files=meta["noise_files"],
        fingerprint=meta["fingerprint"],
        path=path,
        summary=summary,
    )


class CacheWriter:
    """Writes a cache folder under a temporary name; :meth:`commit` makes it visible."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)

    def audio(self, split: str, rows: int, samples: int) -> np.ndarray:
        return np.lib.format.open_memmap(
            self.tmp / f"{split}.audio.npy", mode="w+", dtype=np.int16, shape=(rows, samples)
        )

    def array(self, name: str, values: np.ndarray) -> None:
        np.save(self.tmp / f"{name}.npy", values)

    def json(self, name: str, value) -> None:
        (self.tmp / name).write_text(json.dumps(value, indent=1))

    def commit(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.tmp.rename(self.path)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
