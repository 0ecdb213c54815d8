"""The on-disk cache of decoded splits.

One folder per data set fingerprint holds, per split, ``<split>.audio.npy``
(int16, N x 16000, opened memory-mapped), ``<split>.labels.npy`` and
``<split>.sources.json``; ``noise.npy`` with the background recordings;
``meta.json`` and ``summary.json``. Folders are written under a temporary name
and renamed when complete, so an interrupted ``prepare`` never leaves a cache
that looks valid.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from kws_research import ownership
from kws_research.contract import INT16_SCALE, SAMPLE_RATE, STORED_DTYPE
from kws_research.data.layout import Layout
from kws_research.data.task import NOISE_SPLIT_FRACTIONS
from kws_research.errors import KwsError
from kws_research.processes import remove_dead_temporaries

CACHE_VERSION = 1
# meta.json: the split of each held-out clip's speaker (streams hear a split's own speakers'
# held-out words); a cache written before it is rebuilt in place, its fingerprint unchanged
HELDOUT_SPLITS = "heldout_splits"


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


def test_split_fingerprint(classes: list[str], audio: np.ndarray, labels: np.ndarray) -> str:
    """Identity of what a comparison on the test split depends on: the classes, the
    input contract and the test clips' audio and labels. Training-only data options
    (extra unknown sources, augmentation) leave it unchanged."""
    digest = hashlib.sha256(
        json.dumps({"classes": list(classes), "sample_rate": SAMPLE_RATE, "scale": INT16_SCALE}).encode()
    )
    digest.update(np.ascontiguousarray(audio).tobytes())
    digest.update(np.asarray(labels, dtype=np.int64).tobytes())
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
    stored_test_fingerprint: str | None = None  # written by the cache build (meta.json)
    heldout_splits: list[str] = field(default_factory=list)  # per held-out row: its speaker's split

    def heldout_rows(self, splits: tuple[str, ...]) -> list[int]:
        """Rows of the held-out words spoken by speakers of ``splits``."""
        return [row for row, split in enumerate(self.heldout_splits) if split in splits]

    @cached_property
    def test_fingerprint(self) -> str:
        """See :func:`test_split_fingerprint`; caches built before it was stored hash here."""
        if self.stored_test_fingerprint:
            return self.stored_test_fingerprint
        test = self.splits.get("test")
        if test is None:
            return test_split_fingerprint(self.classes, np.zeros(0, STORED_DTYPE), np.zeros(0, np.int64))
        return test_split_fingerprint(self.classes, test.audio, test.labels)

    def noise_segments(self, split: str = "train") -> list[tuple[int, int]]:
        """(start, stop) of the part of each recording reserved for ``split``."""
        lo, hi = NOISE_SPLIT_FRACTIONS[split]
        return [(f["start"] + int(f["length"] * lo), f["start"] + int(f["length"] * hi)) for f in self.noise_files]


def is_valid(path: Path, signature: str) -> bool:
    meta = path / "meta.json"
    if not meta.is_file():
        return False
    try:
        meta = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return meta.get("stat_signature") == signature and HELDOUT_SPLITS in meta


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
        stored_test_fingerprint=meta.get("test_fingerprint"),
        heldout_splits=list(meta.get(HELDOUT_SPLITS, [])),
        path=path,
        summary=summary,
    )


SPACE_MARGIN = 1.05  # labels, source lists and JSON on top of the audio


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def ensure_space(folder: Path, needed: int, key: str = "dataset.cache_dir") -> None:
    """Refuse before writing, rather than die writing (a memory-mapped write to a full
    disk kills the process with SIGBUS)."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise KwsError(
            f"{key}: {folder} has {_mb(free)} free, the cache needs {_mb(needed)}; "
            f"free some space or set {key}=<folder with space>"
        )


def storage_error(exc: OSError, folder: Path, key: str = "dataset.cache_dir") -> KwsError:
    """An OSError while writing under ``folder`` as one line naming the folder and the key."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return KwsError(
            f"{key}: no space left in {folder} ({exc.strerror}); free some space or set {key}=<folder with space>"
        )
    return KwsError(f"{key}: cannot write to {folder} ({exc.strerror or exc}); set {key}=<writable folder>")


class CacheWriter:
    """Writes a cache folder under a temporary name; :meth:`commit` makes it visible.

    ``needed`` bytes are checked to be free first; stale temporaries of dead
    processes are removed."""

    def __init__(self, path: Path, needed: int = 0) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_dead_temporaries(path.parent)
            ensure_space(path.parent, int(needed * SPACE_MARGIN))
            ownership.check_replaceable(path, "dataset.cache_dir", "set dataset.cache_dir=<another folder>")
            ownership.new_folder(self.tmp, f"cache {path.name}")
        except OSError as exc:
            raise storage_error(exc, path.parent) from exc

    def audio(self, split: str, rows: int, samples: int) -> np.ndarray:
        return np.lib.format.open_memmap(
            self.tmp / f"{split}.audio.npy", mode="w+", dtype=STORED_DTYPE, shape=(rows, samples)
        )

    def array(self, name: str, values: np.ndarray) -> None:
        np.save(self.tmp / f"{name}.npy", values)

    def json(self, name: str, value) -> None:
        (self.tmp / name).write_text(json.dumps(value, indent=1))

    def commit(self) -> None:
        """Make the cache visible, replacing a stale one this harness built (never anything else)."""
        ownership.replace(self.tmp, self.path, "dataset.cache_dir", "set dataset.cache_dir=<another folder>")

    def abort(self) -> None:
        ownership.discard(self.tmp)
